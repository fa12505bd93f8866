"""The list of every reach into KServe's internals fits the installed KServe, and names real files."""

from __future__ import annotations

import ast
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


#: What KServe's modules and objects are written through: the names ``kserve_patches`` assigns.
KSERVE_WRITES = {
    "RESTServerMultiProcess", "RESTServer", "GRPCServer",  # kserve.model_server's module names
    "dataplane", "_rest_server", "_processes", "_server", "should_exit",  # ModelServer, the servers
    "ws", "limit_concurrency",  # RESTServer.config (uvicorn's)
    "build_middleware_stack", "user_middleware",  # KServe's app, when it is built
}  # fmt: skip


def _writes(path: Path) -> list[str]:
    """``line: name`` of each assignment (or in-place list change) to an attribute named in KSERVE_WRITES;
    ``self.name`` counts in a subclass of a KServe class only (our own classes keep their own fields)."""
    tree = ast.parse(path.read_text(), str(path))
    from_kserve = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kserve"
        for alias in node.names
    }
    ours = set()  # (line range) of classes of ours that subclass nothing of KServe's
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
            if not bases & from_kserve:
                ours.add(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in {"append", "extend", "insert", "remove", "pop", "clear"}:
                targets = [node.func.value]
        for target in targets:
            while isinstance(target, ast.Subscript):
                target = target.value
            if not (isinstance(target, ast.Attribute) and target.attr in KSERVE_WRITES):
                continue
            if isinstance(target.value, ast.Name) and target.value.id == "self":
                if any(node.lineno in lines for lines in ours):
                    continue
            found.append(f"{node.lineno}: {target.attr}")
    return found


def test_only_kserve_patches_writes_into_kserve() -> None:
    """Every write into KServe's modules and objects is a function of kserve_patches; the benchmark's floor
    (which must not arm the serving layer's deferred imports) writes its own, as PATCHES says."""
    ours = REPO / "predictor/transport/kserve_patches.py"
    writes = {
        path.relative_to(REPO).as_posix(): found
        for path in sorted((REPO / "predictor").rglob("*.py"))
        if path != ours and (found := _writes(path))
    }
    assert writes == {}
    assert _writes(ours)  # the check sees them where they are
    floor = {w.split(": ")[1] for w in _writes(REPO / "bench/floor.py")}
    assert floor == {"GRPCServer", "_server", "build_middleware_stack", "user_middleware"}
