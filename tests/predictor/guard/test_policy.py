"""predictor.guard.policy: what is checked, what stays open, what is counted."""

from __future__ import annotations

import pytest

from predictor.guard.policy import DEFAULT_OPEN_PATHS, RATE_LIMITED, UNAUTHENTICATED, Guard, GuardConfig


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "keys"
    path.write_text("good-key\n")
    return str(path)


def _guard(**kw):
    counted: list[tuple[str, str]] = []
    guard = Guard(GuardConfig(**kw), on_refused=lambda p, r: counted.append((p, r)))
    return guard, counted


def test_off_by_default():
    guard, _ = _guard()
    assert not guard.active
    assert guard.check("v1", {}.get, "1.2.3.4") is None


def test_missing_and_wrong_keys_are_401_with_a_challenge(keyfile):
    guard, counted = _guard(api_keys_file=keyfile)
    missing = guard.check("v1", {}.get, "a")
    wrong = guard.check("v2", {"x-api-key": "bad"}.get, "a")
    assert missing.status == wrong.status == 401
    assert "missing" in missing.message and "invalid" in wrong.message
    assert "bad" not in wrong.message  # a key is never echoed
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert counted == [("v1", UNAUTHENTICATED), ("v2", UNAUTHENTICATED)]
    assert guard.check("v1", {"authorization": "Bearer good-key"}.get, "a") is None


def test_rate_limit_per_key_else_address(keyfile):
    guard, counted = _guard(api_keys_file=keyfile, rate_limit=1, rate_burst=1)
    ok = {"x-api-key": "good-key"}.get
    assert guard.check("v1", ok, "10.0.0.1") is None
    refused = guard.check("v1", ok, "10.0.0.2")  # same key from elsewhere: same bucket
    assert refused.status == 429 and refused.headers["retry-after"] == "1"
    assert counted == [("v1", RATE_LIMITED)]
    anonymous, _ = _guard(rate_limit=1, rate_burst=1)
    assert anonymous.check("v1", {}.get, "10.0.0.1") is None
    assert anonymous.check("v1", {}.get, "10.0.0.2") is None
    assert anonymous.check("v1", {}.get, "10.0.0.1").status == 429


def test_open_paths(keyfile):
    guard, _ = _guard(api_keys_file=keyfile)
    for path in ("/", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2/models/housing/ready"):
        assert guard.is_open(path), path
    for path in ("/v1/models/housing:predict", "/v2/models/housing/infer", "/v2/models/a/b/ready", "/metricsx"):
        assert not guard.is_open(path), path
    closed, _ = _guard(api_keys_file=keyfile, open_paths=("/v2/health/live",))
    assert not closed.is_open("/metrics")
    assert set(DEFAULT_OPEN_PATHS) >= {"/metrics", "/v2/health/ready"}


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"rate_limit": -1}, "--rate_limit"),
        ({"rate_limit": 1, "rate_burst": 0}, "--rate_burst"),
        ({"max_body_bytes": 0}, "--max_body_bytes"),
        ({"open_paths": ("metrics",)}, "--open_paths"),
    ],
)
def test_bad_settings_name_the_flag(kw, flag):
    with pytest.raises(ValueError, match=flag):
        Guard(GuardConfig(**kw))


# -- issue 22 item 7: the client behind a gateway, failed authentications ------------------------
def _headers(**values: str):
    lower = {k.replace("_", "-"): v for k, v in values.items()}
    return lower.get


def test_x_forwarded_for_counts_only_from_a_trusted_proxy():
    guard = Guard(GuardConfig(trusted_proxies=("10.0.0.0/8", "fd00::/8")))
    xff = _headers(x_forwarded_for="198.51.100.7, 10.1.2.3")
    assert guard.client_address("10.9.9.9", xff) == "198.51.100.7"  # the gateway's hop, then the client
    assert guard.client_address("203.0.113.5", xff) == "203.0.113.5"  # not a proxy: its header is ignored
    assert guard.client_address("10.9.9.9", _headers()) == "10.9.9.9"
    spoofed = _headers(x_forwarded_for="1.1.1.1, 198.51.100.7")  # the client wrote the left part
    assert guard.client_address("10.9.9.9", spoofed) == "198.51.100.7"
    assert guard.client_address("10.9.9.9", _headers(x_forwarded_for="nonsense")) == "10.9.9.9"
    assert Guard(GuardConfig()).client_address("10.9.9.9", xff) == "10.9.9.9"  # no proxies configured


def test_clients_behind_one_gateway_get_a_bucket_each():
    guard = Guard(GuardConfig(rate_limit=1, trusted_proxies=("10.0.0.0/8",)))
    first, second = _headers(x_forwarded_for="198.51.100.1"), _headers(x_forwarded_for="198.51.100.2")
    assert guard.check("v1", first, "10.0.0.1") is None
    assert guard.check("v1", second, "10.0.0.1") is None  # keyed on the client, not the gateway
    assert guard.check("v1", first, "10.0.0.1").status == 429


def test_a_bad_trusted_proxy_is_named():
    with pytest.raises(ValueError, match="--trusted_proxies: 'gateway' is not an IP address or CIDR"):
        Guard(GuardConfig(trusted_proxies=("gateway",)))


def test_failed_authentications_are_rate_limited_before_the_key_is_compared(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("right-key\n")
    refused = []
    guard = Guard(GuardConfig(api_keys_file=str(keys)), on_refused=lambda p, r: refused.append(r))
    statuses = [guard.check("v1", _headers(x_api_key=f"guess-{i}"), "203.0.113.9").status for i in range(30)]
    assert statuses == [401] * 10 + [429] * 20
    # even the right key waits now: guessing is as slow as the refill
    assert guard.check("v1", _headers(x_api_key="right-key"), "203.0.113.9").status == 429
    assert guard.check("v1", _headers(x_api_key="right-key"), "203.0.113.10") is None  # another client
    assert refused.count(UNAUTHENTICATED) == 10 and refused.count(RATE_LIMITED) == 21
