"""What serving never uses is imported when something uses it: the predictor starts in half the time.

These imports cost more than half the CPU time of a predictor start, and no request needs them:

* ``kserve/__init__.py`` (which runs before any ``kserve.*`` module) imports the whole package:
  the Kubernetes client behind ``KServeClient`` with google-auth, jsonschema and
  kubernetes-validate, and ~100 generated CRD models.
* ``kserve.protocol.infer_type`` and ``kserve.utils.utils`` ``import pandas as pd`` at their top,
  for ``InferRequest.as_dataframe`` and the DataFrame branches of KServe's model helpers.
* ``httpx/__init__.py`` imports its command-line client (click, rich, pygments) when it can.
* ``fastapi`` defines ~40 pydantic models (32 of them the OpenAPI document's), and pydantic
  builds each one's validator and serializer as the class is defined.

:func:`install` defers them, invisibly to code that uses them. It is armed by the serving layer only:
``predictor/transport/__init__.py`` calls it, so the entry point (``python -m predictor``) and every
transport module (the model, the routes, the workers) have it in place before they import kserve; it
imports nothing itself. Nothing below the transport and nothing outside the predictor arms it
(``tests/test_import_side_effects.py``): rollout, the dashboard, training and MLflow's pyfunc import
the real packages.

* ``kserve`` is registered as its package module *without* running its ``__init__``, so
  ``import kserve.model`` loads that module and what it imports. The first time a name that is
  not a submodule is looked up on the package (``kserve.KServeClient``, ``from kserve import
  Model``), the real ``__init__`` runs and the name is there.
* KServe's two pandas users run with a stand-in as ``pandas``: any attribute of it imports the
  real pandas and returns the real attribute, except ``DataFrame``, which their annotations read
  while the module runs: calling it builds a real DataFrame, and ``isinstance(x, pd.DataFrame)``
  holds exactly for real DataFrames (there are none before pandas is imported). Every other
  ``import pandas`` gets the real module.
* httpx runs with ``httpx._main`` unimportable, so it takes its own fallback for a missing CLI:
  ``httpx.main`` (the ``httpx`` command's entry point, never called by a server) says to install
  ``httpx[cli]``. ``import httpx._main`` itself still works afterwards.
* the models fastapi defines while it is imported get pydantic's ``defer_build``: each builds
  its validator when it is first used (``/openapi.json``: the first request for it).
* in the serving process (:func:`defer_pydantic_v1`), ``pydantic.v1`` (pydantic's copy of its
  version 1, which FastAPI imports for every route it adds, to ask whether the route's types are
  v1 models) is a stand-in: its ``BaseModel`` answers
  ``isinstance`` / ``issubclass`` as the real one would (no v1 model exists before the real module
  is imported); any other name imports the real ``pydantic.v1`` and is taken from it.
* ``yaml`` (imported at the top of ``kserve.logging`` for YAML log configurations) is executed
  on its first attribute access (:class:`importlib.util.LazyLoader`).
* where the ``kubernetes`` package is absent (the serving image leaves it out, ~126 MB),
  ``kserve.api.kserve_client`` — imported by ``kserve/__init__`` for ``KServeClient``, a client of the
  Kubernetes API the predictor never uses — is a placeholder whose ``KServeClient`` refuses to be
  built (:func:`without_kubernetes_client`), so ``import kserve`` works; with ``kubernetes`` installed
  nothing changes.

A process that imported kserve, pandas or httpx before ``predictor`` keeps them as they are.
The module lists are kserve==0.21.0's, httpx 0.28's and fastapi 0.165's;
``tests/predictor/transport/test_deferred_imports.py`` checks what a serving process imports.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

#: KServe's modules with ``import pandas as pd`` at the top.
PANDAS_USERS = ("kserve.protocol.infer_type", "kserve.utils.utils")
#: httpx's optional command-line client, imported by ``httpx/__init__`` under ``try``.
HTTPX_CLI = "httpx._main"
#: KServe's client of the Kubernetes API, imported by ``kserve/__init__``: a placeholder without ``kubernetes``.
CLIENT_MODULE = "kserve.api.kserve_client"
#: Pydantic's copy of its version 1, which FastAPI imports to ask whether a route's types are v1 models.
PYDANTIC_V1 = "pydantic.v1"
#: Imported at the top of a serving module, used only by what serving never calls (``kserve.logging``
#: reads a YAML log configuration with it): executed on first attribute access
#: (:class:`importlib.util.LazyLoader`).
LAZY = frozenset({"yaml"})


def _real(name: str) -> types.ModuleType:
    """The real module ``name``, imported now when only its stand-in (or nothing) is there."""
    module = sys.modules.get(name)
    if module is None or isinstance(module, _StandIn):
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
    return module


def _loaded(name: str) -> Any:
    """The real module ``name`` if something imported it, else None (then none of its objects exists)."""
    module = sys.modules.get(name)
    return None if module is None or isinstance(module, _StandIn) else module


class _Deferred(type):
    """The metaclass of a stand-in class (``_name`` of module ``_module``): construction and type checks
    are the real class's."""

    _module: str
    _name: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return getattr(_real(cls._module), cls._name)(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        real = _loaded(cls._module)
        return real is not None and isinstance(obj, getattr(real, cls._name))

    def __subclasscheck__(cls, sub: type) -> bool:
        real = _loaded(cls._module)
        return real is not None and issubclass(sub, getattr(real, cls._name))


class _StandIn(types.ModuleType):
    """A module's stand-in: its deferred class (a class attribute of each subclass); any other name is
    taken from the real module, imported on first use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_real(self.__name__), name)


class _DataFrame(metaclass=_Deferred):
    """Stands for ``pandas.DataFrame`` in KServe's annotations and ``isinstance`` checks."""

    _module, _name = "pandas", "DataFrame"


class _PandasStandIn(_StandIn):
    """What KServe's ``pd`` names: the real pandas, imported on first use."""

    DataFrame = _DataFrame


@contextmanager
def _pandas_stand_in() -> Iterator[None]:
    if "pandas" in sys.modules:
        yield
        return
    sys.modules["pandas"] = _PandasStandIn("pandas")
    try:
        yield
    finally:
        if isinstance(sys.modules.get("pandas"), _PandasStandIn):
            del sys.modules["pandas"]


@contextmanager
def _without(name: str) -> Iterator[None]:
    """``import name`` raises ImportError inside (a ``None`` entry in sys.modules)."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get(name, ...) is None:
            del sys.modules[name]


@contextmanager
def _pydantic_models_deferred() -> Iterator[None]:
    """Pydantic models defined inside build their validators on first use (``defer_build``)."""
    from pydantic import BaseModel

    config = BaseModel.model_config  # every model's config starts from a copy of this one
    if "defer_build" in config:
        yield
        return
    config["defer_build"] = True
    try:
        yield
    finally:
        config.pop("defer_build", None)


class _V1BaseModel(metaclass=_Deferred):
    """Stands for ``pydantic.v1.BaseModel`` in FastAPI's "is this a pydantic v1 model?" checks."""

    _module, _name = PYDANTIC_V1, "BaseModel"


class _PydanticV1StandIn(_StandIn):
    """What ``from pydantic import v1`` gives until something needs more than its ``BaseModel`` checks."""

    BaseModel = _V1BaseModel


#: Module → what surrounds its execution when it is first imported.
RUN_WITH: dict[str, Callable[[], AbstractContextManager[None]]] = {
    **{name: _pandas_stand_in for name in PANDAS_USERS},
    "httpx": lambda: _without(HTTPX_CLI),
    "fastapi": _pydantic_models_deferred,
}


class _Surrounded:
    """A module's own loader, its execution inside ``RUN_WITH[name]``."""

    def __init__(self, loader: Any, around: Callable[[], AbstractContextManager[None]]) -> None:
        self.loader = loader
        self.around = around

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        with self.around():
            self.loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... (tracebacks, inspect)
        return getattr(self.loader, name)


class _Finder:
    """Finds the modules of :data:`RUN_WITH` as the path finder does, with their surroundings."""

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        around = RUN_WITH.get(fullname)
        if around is None and fullname not in LAZY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Surrounded(spec.loader, around) if around else importlib.util.LazyLoader(spec.loader)
        return spec


def _package_without_init(name: str) -> types.ModuleType | None:
    """Register package ``name`` in sys.modules without running its ``__init__`` (it runs on demand)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return None
    package = importlib.util.module_from_spec(spec)
    completed = False

    def __getattr__(attr: str) -> Any:  # PEP 562: only names the package does not have (yet)
        nonlocal completed
        if attr.startswith("__") and attr != "__all__":
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        if importlib.util.find_spec(f"{name}.{attr}") is not None:  # `from kserve import errors`
            return importlib.import_module(f"{name}.{attr}")
        if not completed:
            completed = True
            spec.loader.exec_module(package)  # the real __init__: KServeClient, the CRD models, ...
            if attr in package.__dict__:
                return package.__dict__[attr]
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = package
    return package


class KServeClient:
    """Stands in for ``kserve.KServeClient`` where the ``kubernetes`` package is absent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ImportError("kserve.KServeClient needs the kubernetes package, which this image leaves out")


def without_kubernetes_client() -> bool:
    """Make ``import kserve`` work without ``kubernetes``; True when the placeholder was registered."""
    # "kserve" may be in sys.modules already as the package whose __init__ has not run
    # (_package_without_init): the placeholder still stands in for the client when that __init__ runs later
    if CLIENT_MODULE in sys.modules or importlib.util.find_spec("kubernetes"):
        return False
    placeholder = types.ModuleType(CLIENT_MODULE, "kserve.KServeClient's placeholder: no kubernetes package here")
    placeholder.KServeClient = KServeClient  # type: ignore[attr-defined]
    sys.modules[CLIENT_MODULE] = placeholder
    return True


def install() -> None:
    """Defer ``kserve/__init__``, KServe's pandas, httpx's CLI and YAML, and stand in for KServe's Kubernetes
    client where ``kubernetes`` is absent (imports nothing itself; a second call changes nothing)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    if "kserve" not in sys.modules:
        _package_without_init("kserve")
    without_kubernetes_client()


def defer_pydantic_v1() -> None:
    """Put the ``pydantic.v1`` stand-in in place: for the serving process only (``python -m predictor``).

    Code that subclasses ``pydantic.v1.BaseModel`` would subclass the stand-in, so a process that
    may run such code (training, MLflow, tests) must not call this; no serving module does.
    """
    if PYDANTIC_V1 not in sys.modules:
        sys.modules[PYDANTIC_V1] = _PydanticV1StandIn(PYDANTIC_V1)
