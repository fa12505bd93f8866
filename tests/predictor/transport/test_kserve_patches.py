"""The list of every reach into KServe's internals fits the installed KServe, and names real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from predictor.transport import kserve_patches
from predictor.transport.kserve_patches import PATCHES, Patch, missing

REPO = Path(__file__).resolve().parents[3]


def test_every_patch_fits_the_installed_kserve() -> None:
    assert missing() == []


def test_a_moved_target_is_named() -> None:
    gone = Patch("predictor/x.py", "kserve.protocol.dataplane:DataPlane", ("self._gone", "gone_method"), "test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kserve_patches, "PATCHES", (*PATCHES, gone))
        assert missing() == [
            "kserve.protocol.dataplane:DataPlane self._gone (predictor/x.py)",
            "kserve.protocol.dataplane:DataPlane gone_method (predictor/x.py)",
        ]


def test_every_patch_names_a_file_of_ours_that_uses_the_target() -> None:
    for patch in PATCHES:
        path = REPO / patch.where.split(" ")[0]
        assert path.is_file(), patch.where
        name = patch.target.rpartition(":")[2]
        used = [m.removeprefix("self.").rstrip("(") for m in patch.members]
        text = path.read_text()
        assert name in text or any(u in text for u in used), patch
