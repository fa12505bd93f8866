"""Pages as a person sees them: rendered by headless Chromium (Debian's), screenshotted, colours measured."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np

from testkit.servers import find_tool

WIDTH, HEIGHT = 1400, 1100
FLAGS = [
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium(args: list[str], profile: Path, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Run Chromium once with a new empty profile; its process group is killed whatever happens.

    Output goes to files, not pipes: Chromium's helper processes outlive the browser for a while
    and would hold a pipe open; only the browser process is waited for.
    """
    binary = find_tool("chromium", "bash scripts/tools/debian.sh --with-chromium")
    profile.mkdir(parents=True, exist_ok=True)
    out_path, err_path = profile.with_suffix(".out"), profile.with_suffix(".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_path.read_text(), err_path.read_text())


def screenshot(page: Path, out: Path, tmp_path: Path) -> np.ndarray:
    done = chromium([f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={out}", page.as_uri()], tmp_path / "profile")
    assert out.is_file(), done.stderr[-2000:]
    from PIL import Image

    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])


def share_near(pixels: np.ndarray, color: str, tolerance: int = 24) -> float:
    return float((np.abs(pixels - hex_rgb(color)).max(axis=-1) <= tolerance).mean())
