"""The one lock, requirements/lock.txt, read for tests: pinned versions by canonical name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def _pick():
    spec = importlib.util.spec_from_file_location("pick", ROOT / "scripts" / "lock" / "pick.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked_versions() -> dict[str, str]:
    """``{canonical name: version}`` of every package the lock pins (read as pip/uv read it)."""
    blocks = _pick().blocks(LOCK.read_text())
    return {canonicalize_name(name): block.split()[0].split("==", 1)[1] for name, block in blocks.items()}


def locked_hashes() -> dict[str, list[str]]:
    """``{canonical name: [sha256:…]}``: the hashes the lock accepts for each pin."""
    blocks = _pick().blocks(LOCK.read_text())
    return {
        canonicalize_name(name): [w.removeprefix("--hash=") for w in block.split()[1:]]
        for name, block in blocks.items()
    }
