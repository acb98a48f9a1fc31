"""`ForeignHost`: a second real HTTP server, standing in for a host the API key must never reach.

Tests point a `links.next`, a redirect or an HTTP proxy setting at it and then look at `requests`: every
request that arrived, with its headers as sent (the `Authorization` header whole, so a test can say which key
leaked). It answers every request like the last page of an empty segments listing, so a client that follows
a link there would see a plausible, truncated listing rather than an error.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .rules import JSON_API_MEDIA_TYPE


@dataclass(frozen=True)
class ArrivedRequest:
    """One request that reached the foreign host."""

    method: str
    target: str  # the request line's target: a path, or a whole URL when sent to it as a proxy
    headers: dict[str, str]

    @property
    def authorization(self) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == "authorization"), None)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.owner._arrived(ArrivedRequest(self.command, self.path, dict(self.headers.items())))
        body = json.dumps({"data": [], "links": {"self": self.path}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", JSON_API_MEDIA_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815 - stdlib naming

    def do_CONNECT(self) -> None:  # noqa: N802 - an HTTPS proxy request: recorded, refused
        self.server.owner._arrived(ArrivedRequest(self.command, self.path, dict(self.headers.items())))
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `requests` is the record."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: ForeignHost) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class ForeignHost:
    """A recording HTTP server on 127.0.0.1 and a free port (`url`); use it as a context manager."""

    def __init__(self) -> None:
        self._requests: list[ArrivedRequest] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ForeignHost:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ForeignHost:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.stop()

    @property
    def url(self) -> str:
        """ "http://127.0.0.1:<port>": the same machine as the simulator, another origin (another port)."""
        if self._server is None:
            raise RuntimeError("the foreign host is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _arrived(self, request: ArrivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ArrivedRequest]:
        """Every request that arrived, in order."""
        with self._lock:
            return list(self._requests)
