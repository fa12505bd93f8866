"""training.pin: the ConfigMap key of a bundle URI and the guards around recording a digest (the write
itself against a real kube-apiserver with the chart's Role: tests/cluster/test_cluster_pins.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import typer

from training.cli import _record_pin
from training.pin import PIN_CONFIGMAP_ENV, PIN_NAMESPACE_ENV, PinError, pin_key, pin_target, record_pin

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("s3://models/housing/1", "s3___models_housing_1"),
        ("s3://models/housing/1/", "s3___models_housing_1"),  # one trailing slash is the same bundle
        ("s3://my.bucket-1/a/ü~x+y=z@v", "s3___my.bucket-1_a___x_y_z_v"),
        ("file:///data/Bundles_2/v1", "file____data_Bundles_2_v1"),
    ],
)
def test_pin_key_is_a_valid_configmap_key(uri: str, key: str) -> None:
    assert pin_key(uri) == key
    assert re.fullmatch(r"[-._a-zA-Z0-9]+", key)  # what Kubernetes accepts as a ConfigMap key


def test_only_a_sha256_is_recorded() -> None:
    for bad in ("", "AB" * 32, "ab" * 31, "not-a-digest"):
        with pytest.raises(PinError, match="not a sha256"):
            record_pin("s3://models/housing/1", bad, "housing-bundle-pins", "housing", api=object())


def test_pin_target_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PIN_CONFIGMAP_ENV, raising=False)
    monkeypatch.delenv(PIN_NAMESPACE_ENV, raising=False)
    assert pin_target() is None  # `housing train`, the CronJob: nothing to record
    monkeypatch.setenv(PIN_CONFIGMAP_ENV, "housing-bundle-pins")
    with pytest.raises(PinError, match=PIN_NAMESPACE_ENV):
        pin_target()
    monkeypatch.setenv(PIN_NAMESPACE_ENV, "housing")
    assert pin_target() == ("housing-bundle-pins", "housing")


def test_an_unregistered_run_records_no_pin_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a registered digest pins: the install's Job run with --no-register exits 2, saying so."""
    monkeypatch.setenv(PIN_CONFIGMAP_ENV, "housing-bundle-pins")
    monkeypatch.setenv(PIN_NAMESPACE_ENV, "housing")
    result = SimpleNamespace(model_version=None, bundle_uri="s3://models/housing/1", digest=DIGEST)
    with pytest.raises(typer.Exit) as exit_:
        _record_pin(result)  # type: ignore[arg-type]
    assert exit_.value.exit_code == 2
    assert "only a registered version is pinned" in capsys.readouterr().err
    monkeypatch.delenv(PIN_CONFIGMAP_ENV)
    _record_pin(result)  # type: ignore[arg-type]  # not the install's Job: nothing to do
