"""Each backend has the capabilities its callers test for (rollout/backends/base.py), and only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.backends.base import AwaitsReady, Backend, GatewayRouted, HoldsLease, Mirrors, OnInferenceService
from rollout.backends.kserve_serverless import ServerlessBackend
from rollout.backends.kserve_standard import StandardBackend
from rollout.backends.local import LocalBackend


@pytest.mark.parametrize(
    ("make", "capabilities"),
    [
        (
            lambda tmp: StandardBackend("housing", "ml", dry_run=True),
            {HoldsLease, AwaitsReady, GatewayRouted, OnInferenceService},
        ),
        (lambda tmp: ServerlessBackend("housing", "ml", dry_run=True), {HoldsLease, OnInferenceService}),
        (lambda tmp: LocalBackend(tmp, "housing", "nothing"), {Mirrors}),
    ],
    ids=["standard", "serverless", "local"],
)
def test_backend_capabilities(make, capabilities: set[type], tmp_path: Path) -> None:
    backend = make(tmp_path)
    assert isinstance(backend, Backend)
    has = {c for c in (HoldsLease, AwaitsReady, GatewayRouted, Mirrors, OnInferenceService) if isinstance(backend, c)}
    assert has == capabilities
    if OnInferenceService in capabilities:
        assert (backend.isvc, backend.namespace) == ("housing", "ml")
