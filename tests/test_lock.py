"""requirements/lock.txt, the one lock of the dev/test environment (and, by name, of both images).

After `make lock` these say what changed: the installed environment against the lock (run
`make install`), and pyproject's requirements against the lock (run `make lock`).
"""

from __future__ import annotations

import importlib.metadata as md
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testkit.lock import LOCK, ROOT, locked_hashes, locked_versions

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_pin_has_hashes() -> None:
    hashes = locked_hashes()
    assert len(hashes) > 100, f"{LOCK} lists only {len(hashes)} packages"
    assert [n for n, h in hashes.items() if not h or not all(x.startswith("sha256:") for x in h)] == []


def test_pyproject_requirements_are_satisfied_by_the_lock() -> None:
    """A requirement added to or changed in pyproject.toml without `make lock` is caught here."""
    locked = locked_versions()
    project = PYPROJECT["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    unmet = {}
    for spec in wanted:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in locked or not req.specifier.contains(locked[name], prereleases=True):
            unmet[str(req)] = locked.get(name, "not in the lock")
    assert unmet == {}, f"pyproject.toml asks for what requirements/lock.txt does not pin; run `make lock`: {unmet}"


def test_the_environment_is_the_lock() -> None:
    """Every locked package is installed at its locked version and nothing else is.

    Besides the lock: housing itself, and the seeds a venv is made with (``uv venv --seed``, ``python
    -m venv``: pip, setuptools, wheel), which ``uv pip sync`` leaves alone.
    """
    locked = locked_versions()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}
    for name in ("housing", "pip", "setuptools", "wheel"):
        if name not in locked:
            installed.pop(name, None)
    differ = {n: (installed.get(n, "missing"), v) for n, v in locked.items() if installed.get(n) != v}
    extra = sorted(set(installed) - set(locked))
    assert (differ, extra) == ({}, []), (
        f"this environment is not requirements/lock.txt; run `make install`. "
        f"(installed, locked): {differ}; installed but not locked: {extra}"
    )


def test_the_resolution_is_pinned_in_time() -> None:
    """`make lock` moves exclude-newer on purpose; without it a re-lock would follow the index."""
    uv = PYPROJECT["tool"]["uv"]
    assert uv["exclude-newer"].endswith("Z"), uv
    assert uv["environments"] == ["sys_platform == 'linux' and python_version == '3.11'"]
