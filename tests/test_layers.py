"""The packages import in one direction: housing (ground) ← bundle ← training / predictor ← rollout ← bench.

Every import statement is checked, the lazy ones inside functions too. ``housing.cli``,
``housing.demo`` and ``housing.__main__`` are the front door that mounts every package's commands,
so they sit on top of everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("housing", "bundle", "training", "predictor", "rollout", "bench")
#: What each package may import besides itself.
ALLOWED = {
    "housing": {"housing"},
    "bundle": {"housing", "bundle"},
    "training": {"housing", "bundle", "training"},
    "predictor": {"housing", "bundle", "predictor"},
    "rollout": {"housing", "bundle", "predictor", "rollout"},
    "bench": set(PACKAGES),
}
#: The front door, and the dashboard/alert generators (dev-time: they read the predictor's series names).
FRONT_DOOR = {"housing/cli.py", "housing/demo.py", "housing/__main__.py", "housing/dashboard.py", "housing/alerts.py"}


def _first_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_layers_below(package: str) -> None:
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in FRONT_DOOR:
            continue
        bad = _first_party_imports(path) - ALLOWED[package]
        if bad:
            wrong[rel] = sorted(bad)
    assert wrong == {}
