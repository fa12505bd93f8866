"""Leave the Service without dropping a request on a kept-alive connection.

A client that keeps its connection alive (every HTTP client library does) stays on the pod it
first reached: kube-proxy and gateways forward an established connection to the same pod after
that pod has left the endpoints. When the pod then stops, uvicorn closes its idle connections,
and a request the client sent on one of them at that instant is lost (``RemoteProtocolError``:
one of 473 requests in a rolling upgrade on the node tier).

The chart's preStop hook runs ``python -m predictor.transport.drain --seconds N``: it creates the
file named by ``HOUSING_DRAIN_FILE`` (the container's environment) and sleeps. From then on
:class:`DrainMiddleware` answers every request as before but with ``Connection: close``, so each
client's next request opens a new connection, which goes to a pod that is staying. SIGTERM comes
after the sleep, to a pod whose connections have moved away. Without ``HOUSING_DRAIN_FILE``
(``housing serve`` on one machine) nothing is checked.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

#: Environment variable naming the flag file the preStop hook creates (per pod: an emptyDir).
DRAIN_FILE_ENV = "HOUSING_DRAIN_FILE"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def drain_file() -> Path | None:
    """The flag file of this pod, or None when draining is not configured."""
    value = os.environ.get(DRAIN_FILE_ENV)
    return Path(value) if value else None


class DrainMiddleware:
    """Pure ASGI: once the flag file exists, every HTTP response carries ``Connection: close``.

    The file is looked for at most every ``poll_seconds`` (a ``stat`` per request would be cheap,
    none is cheaper); once seen, draining never ends — the pod is on its way out.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], flag: Path, poll_seconds: float = 0.1) -> None:
        self.app = app
        self.flag = flag
        self.poll_seconds = poll_seconds
        self._draining = False
        self._next_look = 0.0

    def draining(self) -> bool:
        """Whether the preStop hook has started (cached for ``poll_seconds``)."""
        if self._draining:
            return True
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + self.poll_seconds
            self._draining = self.flag.exists()
        return self._draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.draining():
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)


def main(argv: list[str] | None = None) -> int:
    """The preStop hook: create the flag file, then keep the pod serving for ``--seconds``."""
    parser = argparse.ArgumentParser(
        prog="python -m predictor.transport.drain",
        description=(
            f"preStop hook: create the file named by ${DRAIN_FILE_ENV} (the predictor then answers with "
            "'Connection: close', moving kept-alive clients to pods that stay), then sleep while the pod "
            "leaves the Service's endpoints."
        ),
    )
    parser.add_argument("--seconds", type=float, required=True, help="how long to keep serving before SIGTERM")
    args = parser.parse_args(argv)
    flag = drain_file()
    if flag is None:
        parser.error(f"{DRAIN_FILE_ENV} is not set: the predictor would not see the drain")
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.touch()
    print(f"draining: {flag} created; serving with 'Connection: close' for {args.seconds:g} s", flush=True)
    time.sleep(args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
