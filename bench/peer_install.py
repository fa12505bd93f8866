"""Installs into the peers' own virtualenvs (MLServer, KServe's runtimes), pinned in time like the lock.

The peers cannot share our lock (they pin other pandas/scikit-learn), so their packages resolve at
install time — but through uv run from the repository, which applies pyproject's
``[tool.uv] exclude-newer``: the index as it stood when requirements/lock.txt was made, so a later
day resolves the same versions. ``make lock`` moves both together.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def uv() -> Path:
    """The lock's uv, installed next to this interpreter (a dev dependency)."""
    path = Path(sys.executable).parent / "uv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make install` (uv is in requirements/lock.txt)")
    return path


def pip_install_command(venv: Path, args: Sequence[str]) -> list[str]:
    """``uv pip install`` into ``venv``; run it with ``cwd=REPO`` so pyproject's uv settings apply."""
    return [str(uv()), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *args]


def pip_install(venv: Path, args: Sequence[str]) -> None:
    """Install ``args`` into ``venv`` as resolved at the lock's instant; raises on failure."""
    subprocess.run(pip_install_command(venv, args), check=True, cwd=REPO)
