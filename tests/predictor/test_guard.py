"""predictor.guard: what is checked, what stays open, what is counted."""

from __future__ import annotations

import pytest

from predictor.guard import DEFAULT_OPEN_PATHS, RATE_LIMITED, UNAUTHENTICATED, Guard, GuardConfig


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
