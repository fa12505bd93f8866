"""Where a server we started listens (``LoopbackServer``): the address a client reaches it at."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from common.net import LoopbackServer, free_port, wait_http


@dataclass
class Listening(LoopbackServer):
    http_port: int
    grpc_port: int


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.path.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_loopback_servers_http_url_reaches_it_and_its_grpc_target_names_the_grpc_port() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        where = Listening(server.server_address[1], 50051)
        wait_http(f"{where.http_url}/ready", timeout=10)
        assert httpx.get(f"{where.http_url}/v2/health/ready", timeout=5).text == "/v2/health/ready"
        assert where.grpc_target == "127.0.0.1:50051"
    finally:
        server.shutdown()
        server.server_close()
