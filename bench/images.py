"""The images as Kubernetes runs them: their sizes, and the predictor's start to Ready in the serving image.

``scripts/images/build.sh serving training`` builds both Dockerfile targets with podman (or finds
them up to date); their sizes are podman's. Then one serving-image container runs as the chart runs
it — uid 10001, read-only root filesystem, only ``/tmp`` writable, no network — with the bundle
mounted at ``/mnt/models``, and ``python -m predictor`` is started in it ``runs`` times by a probe
(:data:`PROBE`, the image's own Python) that times the spawn to the first 200 from the ready
endpoint, as a readiness probe sees it, and reads the CPU seconds the process used. Needs root and
podman; :func:`available` says why not otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from common.config import DEFAULT_MODEL_NAME

console = Console(stderr=True)
REPO = Path(__file__).resolve().parent.parent
PODMAN = ["bash", str(REPO / "scripts/images/podman.sh")]
#: build.sh's last log lines: "images: <reference> sha256:<id> <n> MB (<bytes> bytes)"
_BUILT = re.compile(r"^images: (\S+)\s+sha256:(\w+)\s+.*\((\d+) bytes\)", re.M)

#: Runs inside the serving image (its Python, standard library only): argv = model name, runs.
PROBE = """
import os, subprocess, sys, time, urllib.request
name, runs = sys.argv[1], int(sys.argv[2])
url = f"http://127.0.0.1:18080/v2/models/{name}/ready"
for _ in range(runs):
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "predictor", "--model_name", name, "--http_port", "18080",
                             "--grpc_port", "18081"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            sys.exit(f"the predictor exited with {proc.returncode} before it was ready")
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.005)
    wall = time.perf_counter() - began
    stat = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    proc.terminate()
    proc.wait()
    print(f"start {wall:.4f} {cpu:.3f}", flush=True)
"""


@dataclass
class ImageResult:
    """Sizes (bytes) and IDs of both images; the serving image's starts."""

    sizes: dict[str, int] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)  # what podman runs, as build.sh lists it
    start_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.start_s:
            out["median"] = {"start_s": statistics.median(self.start_s), "cpu_s": statistics.median(self.cpu_s)}
        return out


def available() -> str | None:
    """None when the images can be built and run here, else the reason they cannot."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    if os.geteuid() != 0:
        return "scripts/images/build.sh needs root (debootstrap, rootful podman)"
    return None


def build() -> ImageResult:
    """Build (or find up to date) the serving and training images; their IDs and sizes."""
    console.log("images: scripts/images/build.sh serving training (cached by the hash of their inputs)")
    out = subprocess.run(
        ["bash", str(REPO / "scripts/images/build.sh"), "serving", "training"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/images/build.sh failed ({out.returncode}): {out.stderr[-3000:]}")
    res = ImageResult()
    for reference, image_id, size in _BUILT.findall(out.stderr):
        for target in ("serving", "training"):
            if f"housing-{target}:" in reference:
                res.sizes[target], res.ids[target] = int(size), image_id
    for line in out.stdout.splitlines():  # "<reference> <archive>" per image
        for target in ("serving", "training"):
            if f"/housing-{target}:" in line:
                res.references[target] = line.split()[0]
    if set(res.sizes) != {"serving", "training"} or set(res.references) != {"serving", "training"}:
        raise RuntimeError(f"scripts/images/build.sh did not report both images: {out.stdout}{out.stderr[-2000:]}")
    return res


def measure_starts(res: ImageResult, bundle_dir: Path, runs: int, model_name: str = DEFAULT_MODEL_NAME) -> None:
    """``runs`` predictor starts inside one container of ``res``'s serving image, run as the chart runs it."""
    reference = res.references["serving"]
    name = f"housing-bench-start-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="housing-bench-probe-") as tmp:
        probe, mounted = Path(tmp) / "probe.py", Path(tmp) / "bundle"
        probe.write_text(PROBE)
        shutil.copytree(bundle_dir, mounted)
        for path in [Path(tmp), probe, mounted, *mounted.rglob("*")]:  # readable by the image's user
            path.chmod(0o755 if path.is_dir() else 0o644)
        run = [
            *PODMAN, "run", "-d", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp",
            "--user", "10001:10001", "-v", f"{mounted}:/mnt/models:ro", "-v", f"{probe}:/probe.py:ro",
            "--entrypoint", "sleep", reference, "3600",
        ]  # fmt: skip
        subprocess.run(run, check=True, capture_output=True, text=True, timeout=120)
        try:
            out = subprocess.run(
                [*PODMAN, "exec", name, "python", "/probe.py", model_name, str(runs)],
                capture_output=True,
                text=True,
                timeout=120 + 60 * runs,
            )
            if out.returncode != 0:
                raise RuntimeError(f"the start probe failed in the serving image: {out.stdout}{out.stderr[-2000:]}")
        finally:
            subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name], capture_output=True, timeout=120)
    for line in out.stdout.splitlines():
        if line.startswith("start "):
            wall, cpu = line.split()[1:]
            res.start_s.append(float(wall))
            res.cpu_s.append(float(cpu))
    console.log(
        f"serving image: start → ready median {statistics.median(res.start_s):.2f} s "
        f"({statistics.median(res.cpu_s):.2f} CPU s) over {len(res.start_s)} starts"
    )
