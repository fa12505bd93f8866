"""The KServe transport: the ``kserve.Model`` (:mod:`.model`), V1/V2 REST routes, the REST middleware
(:mod:`.rest_middleware`), gRPC, the multi-process workers, and how ``kserve`` is imported without what
serving never uses (:mod:`.deferred_imports`).

The top of the serving stack: may import core, codec, guard and observe; nothing below imports it.
Importing it arms :func:`.deferred_imports.install` — the one import-time side effect of the predictor,
for the serving layer only (the entry point and the workers import it before anything imports kserve).
"""

from predictor.transport.deferred_imports import install as _defer_imports

_defer_imports()
