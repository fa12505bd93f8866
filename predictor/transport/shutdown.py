"""Shutdown in the right order: stop taking requests, finish the ones in flight, then unload the model.

KServe's ``ModelServer.stop`` (SIGTERM/SIGINT) starts stopping the servers in a task and unloads
every model at once, in the signal handler: requests still in flight — gRPC ones, and REST ones
in ``--workers`` > 1 mode, whose parent serves gRPC — found no model and answered 404 / NOT_FOUND
while the pod drained. :class:`DrainingModelServer` stops the REST workers and the gRPC server
first (each waits up to ``grace_period`` for what is in flight) and unloads afterwards. A
single-process REST server drains before this runs: uvicorn takes the signal first, finishes its
requests, then hands the signal on — once it serves. A signal that comes between KServe's handler
and uvicorn's (start-up) reached only this one, and uvicorn went on serving without a model, never
to exit: ``stop`` tells it to exit too. A signal before the servers' event loop runs ends the
process by that signal, as one before KServe's handler does (KServe's handler would raise ``no
running event loop`` with a traceback).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from kserve.model_server import ModelServer

from predictor.transport import kserve_patches

log = logging.getLogger("predictor")


class DrainingModelServer(ModelServer):
    """``kserve.ModelServer`` whose ``stop`` drains the servers before it unloads the models."""

    _shutdown: asyncio.Task | None = None

    def stop(self, sig: int) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # before the servers' loop: nothing serves yet, nothing to drain
            # end as a signal before KServe's handler does (by the signal: 128 + sig), running no more
            # Python code here: an exception raised in a signal handler could land anywhere
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            return
        rest = self._rest_server  # single-process REST (None with --workers > 1)
        if rest is not None:  # uvicorn drains on this; if it took the signal itself, it has already exited
            kserve_patches.tell_rest_server_to_exit(rest)

        async def shutdown() -> None:
            from kserve.utils.inference_client_factory import InferenceClientFactory

            await InferenceClientFactory().close()
            log.info("stopping: draining the servers (up to %d s each), then unloading the model", self.grace_period)
            if self._rest_multiprocess_server:
                await self._rest_multiprocess_server.stop(sig)
            if self._grpc_server:
                await self._grpc_server.stop(sig)
            for name in list(self.registered_models.get_models()):
                self.registered_models.unload(name)
            log.info("stopped: servers drained, model unloaded")

        self._shutdown = asyncio.create_task(shutdown())  # kept: a task nobody references may be collected
