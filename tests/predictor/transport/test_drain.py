"""The preStop drain: once its file exists, answers carry ``Connection: close`` (and before, none does)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from predictor.transport.drain import DrainMiddleware


async def _app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _headers(middleware: DrainMiddleware) -> list[tuple[bytes, bytes]]:
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    asyncio.run(middleware({"type": "http"}, receive, send))
    return sent[0]["headers"]


def test_answers_close_their_connection_once_the_flag_exists(tmp_path: Path) -> None:
    flag = tmp_path / "draining"
    middleware = DrainMiddleware(_app, flag=flag, poll_seconds=0)
    assert _headers(middleware) == [(b"connection", b"keep-alive")]
    flag.touch()
    assert _headers(middleware) == [(b"connection", b"close")]  # replaced, not doubled
    flag.unlink()
    assert middleware.draining()  # a pod on its way out stays draining


def test_the_flag_is_looked_for_at_most_every_poll_interval(tmp_path: Path) -> None:
    flag = tmp_path / "draining"
    middleware = DrainMiddleware(_app, flag=flag, poll_seconds=3600)
    assert not middleware.draining()
    flag.touch()
    assert not middleware.draining()  # not looked again within the interval
