"""A webhook receiver for tests: a real HTTP server on loopback that keeps every JSON body it gets."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Collects POSTed JSON bodies in arrival order; ``fail_first`` answers 500 to that many posts."""

    def __init__(self, fail_first: int = 0, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first, self.status = fail_first, status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first or receiver.status >= 400
                    if not failing:
                        receiver.bodies.append(json.loads(body))
                self.send_response((receiver.status if receiver.status >= 400 else 500) if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        with self.lock:
            return [b.get("event", "?") for b in self.bodies]
