"""Finding unreferenced bundles in a directory root (the S3 side: tests/integration/test_bundles_prune.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from training.prune import delete, find_orphans


def _bundle(root: Path, name: str, *files: str, hours_old: float = 0.0) -> Path:
    folder = root / "housing" / name
    folder.mkdir(parents=True)
    stamp = time.time() - hours_old * 3600
    for file in files:
        (folder / file).write_text("{}")
        os.utime(folder / file, (stamp, stamp))
    return folder


def test_unreferenced_folders_are_found_with_their_age(tmp_path: Path) -> None:
    kept = _bundle(tmp_path, "1", "bundle.json", "linear.json", hours_old=100)
    old = _bundle(tmp_path, "2", "bundle.json", "linear.json", hours_old=50)
    partial = _bundle(tmp_path, "3", "linear.json", hours_old=1)
    (tmp_path / "stray.txt").write_text("not a bundle")
    found = find_orphans(str(tmp_path), {f"file://{kept}/"})
    assert [c.uri for c in found] == [str(old), str(partial)]  # oldest first, the referenced one never
    assert [round(c.age_hours) for c in found] == [50, 1] and [c.complete for c in found] == [True, False]
    delete(found[0])
    assert not old.exists() and kept.exists() and partial.exists()
