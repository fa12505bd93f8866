"""The environment skaffold runs in here: skaffold v2.16.1 and helm 3 first on PATH, and
DOCKER_HOST at a podman Docker-compatible API service started for the caller and stopped after
(skaffold's Docker builder and its image lookups use it; the node profile builds with the podman
CLI through scripts/images/skaffold-build.sh).

skaffold's helm deployer runs ``helm version --client``, which helm 4 refuses, so helm 3
(scripts/tools/skaffold.sh) comes first on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testkit.procs import stop_process
from testkit.servers import TOOLS_DIR, find_tool

from .conftest import REPO


@contextmanager
def skaffold_environment(work: Path) -> Iterator[dict[str, str]]:
    """The env for ``skaffold`` with a podman API service on ``work/podman.sock``."""
    skaffold = find_tool("skaffold", "bash scripts/tools/skaffold.sh")
    helm3 = TOOLS_DIR / "helm3" / "helm"
    if not helm3.is_file():
        find_tool("helm3/helm", "bash scripts/tools/skaffold.sh")
    podman = shutil.which("podman") or find_tool("podman", "scripts/node/deps.sh")
    sock = work / "podman.sock"
    service = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "podman.log", "wb"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {(work / 'podman.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield {
            **os.environ,
            "PATH": f"{helm3.parent}:{Path(skaffold).parent}:{os.environ['PATH']}",
            "DOCKER_HOST": f"unix://{sock}",
            "SKAFFOLD_UPDATE_CHECK": "false",
            "SKAFFOLD_DISABLE_MONITORING": "true",
            "HOME": str(work),  # skaffold writes ~/.skaffold; keep it in the test's directory
        }
    finally:
        stop_process(service, 15)


def skaffold(
    env: dict[str, str], *args: str, cwd: Path = REPO, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run skaffold to completion in ``cwd``."""
    return subprocess.run(
        [shutil.which("skaffold", path=env["PATH"]) or "skaffold", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
