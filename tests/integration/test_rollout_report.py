"""The rollout report as a person sees it: rendered by headless Chromium (Debian's), screenshotted.

Reports of a promoted and of a rolled-back run (event logs written by the real Analysis loop,
see tests/rollout/test_report.py) are opened from disk with networking off; the screenshot must
not be blank, and must show the decision: its banner colour across the top of the page with the
title written on it in white, and not the other decision's colour.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rollout import report
from testkit.servers import find_tool
from tests.rollout.test_report import run_to_log

pytestmark = pytest.mark.integration
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


@pytest.mark.parametrize(("error_rate", "decision"), [(0.0, "promoted"), (0.3, "rolled_back")])
def test_report_renders_in_chromium_and_shows_the_decision(tmp_path, error_rate, decision):
    log = run_to_log(tmp_path, error_rate)
    html_path, _ = report.write_report(log.path)
    image = screenshot(html_path, tmp_path / "shot.png", tmp_path)
    assert image.shape[:2] == (HEIGHT, WIDTH)
    # not blank: many colours, real contrast, and the page's lower part (tables, chart) has content
    colours = len(np.unique(image[..., 0] << 16 | image[..., 1] << 8 | image[..., 2]))
    assert colours > 200, colours
    assert image.std() > 30
    assert (image[300:] < 200).any(axis=-1).mean() > 0.02
    # the decision: a banner of its colour over the top of the page, with white text on it
    banner = image[5:70, :]
    assert share_near(banner, report.COLORS[decision]) > 0.6
    other = "rolled_back" if decision == "promoted" else "promoted"
    assert share_near(banner, report.COLORS[other]) < 0.01
    white_text = share_near(banner[:, :500], "#ffffff", 40)
    assert 0.03 < white_text < 0.5, white_text
