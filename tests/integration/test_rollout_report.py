"""The rollout report as a person sees it: rendered by headless Chromium (Debian's), screenshotted.

Reports of a promoted and of a rolled-back run (event logs written by the real Analysis loop,
see testkit/rollout_runs.py) are opened from disk with networking off; the screenshot must
not be blank, and must show the decision: its banner colour across the top of the page with the
title written on it in white, and not the other decision's colour.
"""

from __future__ import annotations

import numpy as np
import pytest

from rollout import report
from testkit.chromium import HEIGHT, WIDTH, screenshot, share_near
from testkit.rollout_runs import run_to_log

pytestmark = pytest.mark.integration


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
