"""``import kserve`` without the Kubernetes client, which the serving image leaves out.

``kserve/__init__.py`` imports ``kserve.api.kserve_client`` (``KServeClient``, a client of the
Kubernetes API for managing InferenceServices), and that module imports the ``kubernetes``
package (~126 MB installed). The predictor never uses it. When ``kubernetes`` is not installed,
:func:`without_kubernetes_client` registers a placeholder for that one module, whose
``KServeClient`` refuses to be built, so that ``import kserve`` works; with ``kubernetes``
installed it does nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import types

CLIENT_MODULE = "kserve.api.kserve_client"


class KServeClient:
    """Stands in for ``kserve.KServeClient`` where the ``kubernetes`` package is absent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ImportError("kserve.KServeClient needs the kubernetes package, which this image leaves out")


def without_kubernetes_client() -> bool:
    """Make ``import kserve`` work without ``kubernetes``; True when the placeholder was registered."""
    # "kserve" may be in sys.modules already as predictor.deferred_imports' package whose __init__
    # has not run: the placeholder still stands in for the client when that __init__ runs later
    if CLIENT_MODULE in sys.modules or importlib.util.find_spec("kubernetes"):
        return False
    placeholder = types.ModuleType(CLIENT_MODULE, __doc__)
    placeholder.KServeClient = KServeClient  # type: ignore[attr-defined]
    sys.modules[CLIENT_MODULE] = placeholder
    return True
