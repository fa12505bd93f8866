"""The per-request log lines, on or off: ``--access_log`` and ``--trace_log`` (both off by default).

At INFO, KServe writes three lines for every REST request and two for every gRPC one: uvicorn's
access line (``uvicorn.access``), the ``kserve.trace`` timing line of KServe's ``TimingMiddleware``
(which also walks the app's routes to name the request), the ``kserve.trace`` latency line of
``Model.__call__`` (``--enable_latency_logging``), and for gRPC KServe's ``LoggingInterceptor``'s
``grpc method: …`` line. At production rates that is CPU on the request path and a flood in the log
pipeline, and it says nothing the request metrics (``housing_requests_total``, KServe's latency
histograms) and the gateway's own access log do not.

- ``--access_log false`` (default): no uvicorn access line (its logger has no handler, so uvicorn
  skips the formatting too) and no ``grpc method`` line (``CallGuard`` writes it only with ``--access_log``);
- ``--trace_log false`` (default): no ``TimingMiddleware`` (nothing else reads it; the transport drops
  it from KServe's app, :func:`predictor.transport.kserve_patches.drop_timing_middleware`) and no latency
  line (``enable_latency_logging`` off whatever ``--enable_latency_logging`` says).

Errors and client errors are logged as before either way: they are separate WARNING/ERROR lines
(:mod:`predictor.guard.client_errors`, KServe's handlers).
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

ACCESS_LOG_ENV = "HOUSING_ACCESS_LOG"
TRACE_LOG_ENV = "HOUSING_TRACE_LOG"
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def on_off(value: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no, on/off) → bool; anything else is an argparse error."""
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class RequestLogs:
    """Which per-request lines are written (picklable: REST workers get it too)."""

    access: bool = False
    trace: bool = False

    def describe(self) -> str:
        """``access log off, trace log off``: how the bench and the start-up line name the setting."""
        return f"access log {'on' if self.access else 'off'}, trace log {'on' if self.trace else 'off'}"


#: The defaults: no per-request line.
OFF = RequestLogs()
#: Every per-request line KServe writes at INFO.
ON = RequestLogs(access=True, trace=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--access_log`` and ``--trace_log`` (defaults from HOUSING_ACCESS_LOG / HOUSING_TRACE_LOG, else off)."""
    group = parser.add_argument_group("per-request log lines (off by default; errors are always logged)")
    for flag, env, help_text in (
        (
            "--access_log",
            ACCESS_LOG_ENV,
            "One line per request: uvicorn's access line (REST) and KServe's 'grpc method' line (gRPC).",
        ),
        (
            "--trace_log",
            TRACE_LOG_ENV,
            "KServe's kserve.trace lines: the REST timing line and the per-request "
            "latency line (--enable_latency_logging applies only when this is on).",
        ),
    ):
        default = on_off(os.environ.get(env, "false"))
        group.add_argument(flag, type=on_off, default=default, help=f"{help_text} Default: {env}, else false.")


def from_args(args: argparse.Namespace) -> RequestLogs:
    """The settings of the parsed flags."""
    return RequestLogs(access=args.access_log, trace=args.trace_log)


def apply(logs: RequestLogs) -> None:
    """This process's loggers (after KServe configured logging): no access handler when the access log is off."""
    if not logs.access:
        access = logging.getLogger("uvicorn.access")
        access.handlers = []
        access.propagate = False  # uvicorn then writes (and formats) nothing: hasHandlers() is False
