"""The packages import in one direction: common (ground) ← bundle ← registry.resolve ← predictor ← registry
← training ← monitor ← rollout ← bench ← housing (the front door).

Every import statement is checked, the lazy ones inside functions too, with no exemption. ``housing``
is the roof: ``housing`` (the CLI that mounts every package's commands), the demo, and the dashboard
and alert rules generated from the series of every package; nothing imports it. What everything shares
(settings, series names, network and process helpers) is the ground floor, ``common``.

``registry`` straddles the predictor: :mod:`registry.resolve` (``models:/`` → a bundle URI) is what the
predictor asks, so it sits below it; the rest of ``registry`` (the lifecycle, the MLflow pyfunc model,
which loads through the predictor's reader) sits above. A layer is a package or, so, one module of it.

Inside ``predictor`` the subpackages import in one direction too: core ← codec ← transport, with
guard and observe beside them below transport, and client (what serving never runs) on top;
``predictor/__init__.py`` and ``predictor/__main__.py`` (the entry point) may import any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The layers, bottom first: a package, or a module of a package that sits lower than the rest of it.
LAYERS = (
    "common",
    "bundle",
    "registry.resolve",
    "predictor",
    "registry",
    "training",
    "monitor",
    "rollout",
    "bench",
    "housing",
    "testkit",
)
PACKAGES = tuple(dict.fromkeys(layer.split(".")[0] for layer in LAYERS))
_BELOW_PREDICTOR = {"common", "bundle", "registry.resolve"}
#: What each layer may import besides itself.
ALLOWED = {
    "common": set(),
    "bundle": {"common"},
    "registry.resolve": {"common", "bundle"},
    "predictor": _BELOW_PREDICTOR,
    "registry": _BELOW_PREDICTOR | {"predictor"},
    "training": _BELOW_PREDICTOR | {"registry"},
    "monitor": _BELOW_PREDICTOR | {"predictor"},
    "rollout": _BELOW_PREDICTOR | {"predictor", "registry", "monitor"},
    "bench": set(LAYERS) - {"housing", "testkit"},
    "housing": set(LAYERS) - {"testkit"},
    "testkit": set(LAYERS) - {"housing"},  # the tests' helpers: they start any part of the system
}


def _layer(name: str) -> str | None:
    """The layer of the dotted module (or imported) name: the longest layer it is or lies under."""
    found = [layer for layer in LAYERS if name == layer or name.startswith(layer + ".")]
    return max(found, key=len) if found else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PREDICTOR_SUBPACKAGES = ("core", "codec", "transport", "guard", "observe", "client")
#: What each predictor subpackage may import of the predictor besides itself.
PREDICTOR_ALLOWED = {
    "core": set(),
    "codec": {"core"},
    "guard": set(),
    "observe": set(),
    "transport": {"core", "codec", "guard", "observe"},
    "client": {"core"},
}


def _imported_names(path: Path) -> set[str]:
    """What each import statement names, as specifically as it says (``from a import b`` names ``a.b``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(f"{node.module}.{alias.name}" if alias.name != "*" else node.module for alias in node.names)
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below(layer: str) -> None:
    wrong = {}
    for path in sorted((ROOT / layer.split(".")[0]).rglob("*.py")):
        if _layer(_module_name(path)) != layer:
            continue
        used = {_layer(name) for name in _imported_names(path)} - {None, layer}
        bad = used - ALLOWED[layer]
        if bad:
            wrong[path.relative_to(ROOT).as_posix()] = sorted(bad)
    assert wrong == {}


def test_every_package_has_its_layer() -> None:
    packages = {init.parent.name for init in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(PACKAGES)
    assert set(ALLOWED) == set(LAYERS)
    for layer in LAYERS:  # a layer's module exists
        assert (ROOT / f"{layer.replace('.', '/')}.py").is_file() or (ROOT / layer / "__init__.py").is_file()


def test_every_predictor_module_lives_in_a_subpackage() -> None:
    """Only the package's ``__init__`` and the ``python -m predictor`` entry point stay at the top."""
    top = sorted(p.name for p in (ROOT / "predictor").glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
    subpackages = sorted(p.name for p in (ROOT / "predictor").iterdir() if (p / "__init__.py").is_file())
    assert subpackages == sorted(PREDICTOR_SUBPACKAGES)


@pytest.mark.parametrize("subpackage", PREDICTOR_SUBPACKAGES)
def test_predictor_subpackage_imports_only_the_layers_below(subpackage: str) -> None:
    wrong = {}
    for path in sorted((ROOT / "predictor" / subpackage).rglob("*.py")):
        used = set()
        for name in _imported_names(path):
            parts = name.split(".")
            if parts[0] == "predictor":
                # `from predictor import x` names the module x; `import predictor` alone names nothing
                used.add(parts[1] if len(parts) > 1 else "")
        bad = used - PREDICTOR_ALLOWED[subpackage] - {subpackage, ""}
        if bad:
            wrong[path.relative_to(ROOT).as_posix()] = sorted(bad)
    assert wrong == {}


@pytest.mark.parametrize("subpackage", ["core", "guard", "observe"])
def test_the_predictor_below_transport_does_not_import_kserve(subpackage: str) -> None:
    """KServe is the transport's business: the model core, the guard and the metrics stand without it."""
    wrong = {
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "predictor" / subpackage).rglob("*.py"))
        if any(name.split(".")[0] == "kserve" for name in _imported_names(path))
    }
    assert wrong == set()
