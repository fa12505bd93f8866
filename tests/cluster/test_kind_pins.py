"""The versions scripts/kind/cluster-up.sh pins exist upstream.

Their projects tag Go modules with the same versions as their releases, and the Go module
proxy serves those tags, so `go list -m` proves a pin is a real release without reaching the
release downloads (which these machines cannot). Knative Serving's module carries v0.N tags:
release knative-v1.M.P is module v0.(M+27).P. KServe v0.21.x is not on the proxy; the version
exercised on the node tier is v0.20.0 (scripts/tools/kserve.sh).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from .conftest import REPO

pytestmark = pytest.mark.cluster

LIB = REPO / "scripts" / "kind" / "lib.sh"


def pins() -> dict[str, str]:
    text = LIB.read_text()
    return dict(re.findall(r'^([A-Z_]+_VERSION)="\$\{[A-Z_]+:-([^}]+)\}"', text, re.M))


def knative_module_version(release: str) -> str:
    major, minor, patch = re.fullmatch(r"knative-v(\d+)\.(\d+)\.(\d+)", release).groups()
    assert major == "1", release
    return f"v0.{int(minor) + 27}.{patch}"


MODULES = {
    "CERT_MANAGER_VERSION": ("github.com/cert-manager/cert-manager", lambda v: v),
    "GATEWAY_API_VERSION": ("sigs.k8s.io/gateway-api", lambda v: v),
    "KNATIVE_VERSION": ("knative.dev/serving", knative_module_version),
}


def test_every_pin_is_parsed() -> None:
    assert set(MODULES) | {"KSERVE_VERSION"} <= set(pins()), pins()


@pytest.mark.parametrize("pin", sorted(MODULES))
def test_pin_is_a_tagged_release(pin: str) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain is needed to ask the module proxy")
    module, to_module_version = MODULES[pin]
    version = to_module_version(pins()[pin])
    result = subprocess.run(
        [go, "list", "-m", "-json", f"{module}@{version}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{pin}={pins()[pin]}: {module}@{version} is not a release: {result.stderr}"
    info = json.loads(result.stdout)
    assert info["Version"] == version and info.get("Time"), info
