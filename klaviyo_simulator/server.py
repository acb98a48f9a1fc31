"""HTTP plumbing: a threaded stdlib server that reads requests, applies scripted faults, calls the API layer,
writes responses and records both sides.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .admin import ADMIN_PREFIX, handle_admin
from .api import ApiRequest, ApiResponse
from .error_documents import error_document, throttled_document
from .faults import Fault
from .recording import Headers, RecordedRequest, redact_headers
from .rules import JSON_API_MEDIA_TYPE, SEGMENT_SERIES_PATH, SEGMENT_VALUES_PATH

if TYPE_CHECKING:
    from .simulator import KlaviyoSimulator

_REPORT_PATHS = (SEGMENT_SERIES_PATH, SEGMENT_VALUES_PATH)
_HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>{status} Server Error</title></head>"
    "<body><h1>{status} Server Error</h1>"
    "<p>The server encountered an error. Please try again later.</p></body></html>\n"
)


class SimulatorHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that knows its simulator.

    Args:
        address: `(host, port)`; port 0 picks a free port.
        simulator: The simulator whose API, faults and log the handlers use.
    """

    daemon_threads = True
    # stop() must not wait for a handler that is sleeping through a scripted delay
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: KlaviyoSimulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer
    # HTTP/1.1 keeps connections alive like Klaviyo's edge; every response sets Content-Length
    protocol_version = "HTTP/1.1"
    server_version = "KlaviyoSimulator/1"
    # an idle keep-alive connection must not pin a handler thread forever
    timeout = 60

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes; without TCP_NODELAY, Nagle plus the client's delayed ACK
        # adds ~40 ms to every keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request log is the record, and test output should not fill with access lines."""

    # -- dispatch ------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = time.monotonic()
        simulator = self.server.simulator
        split = urlsplit(self.path)
        path = split.path
        query_items = parse_qsl(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""

        if path.startswith(ADMIN_PREFIX):
            status, payload = handle_admin(simulator, self.command, path, dict(query_items))
            self._write(_Outcome.json(status, payload, {"Content-Type": "application/json"}))
            return

        headers = Headers(self.headers.items())
        record = RecordedRequest(
            method=self.command,
            path=path,
            query=dict(query_items),
            query_items=list(query_items),
            headers=redact_headers(self.headers.items()),
            json=_parse_json(body),
            started=started,
            account=simulator.account_name_for(headers),
        )
        # logged on arrival, so a request still waiting out a scripted delay already counts as received
        simulator.record(record)
        host = headers.get("Host")
        base_url = f"http://{host}" if host else simulator.base_url
        fault = simulator.faults.take(self.command, path)
        if fault is not None:
            record.fault = fault.describe()
            if fault.delay_seconds > 0:
                time.sleep(fault.delay_seconds)
            for segment_id in fault.delete_segment_ids:
                with contextlib.suppress(KeyError):  # already deleted
                    simulator.account.delete(segment_id)
        try:
            if fault is not None and fault.short_circuits:
                outcome = _fault_outcome(fault)
            else:
                request = ApiRequest(self.command, path, query_items, split.query, headers, body, base_url)
                outcome = _api_outcome(simulator.api.handle(request), fault)
        except Exception as exc:  # a simulator bug must surface as a 500, not a hung client
            document = error_document(500, f"Simulator error: {type(exc).__name__}: {exc}")
            outcome = _Outcome.json(500, document, {"Content-Type": JSON_API_MEDIA_TYPE})

        # complete the record before answering: a client that has its answer must find it in the log
        record.status = outcome.status
        record.response_json = outcome.document
        record.response_headers = outcome.headers
        record.duration = time.monotonic() - started
        record.completed = True
        simulator.record_outcome(record, is_report=path in _REPORT_PATHS)
        self._write(outcome)

    # -- writing -------------------------------------------------------------------------------------------

    def _write(self, outcome: _Outcome) -> None:
        if outcome.status is None:
            # no status line at all: the client sees the connection close mid-request
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(outcome.status)
            for name, value in outcome.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(outcome.body)
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up (e.g. its timeout fired during a scripted delay); nothing left to tell it
            self.close_connection = True


@dataclass
class _Outcome:
    """A response ready to write: status (`None` drops the connection), bytes, headers, parsed JSON."""

    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    document: Any = None

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str]) -> _Outcome:
        data = b"" if document is None else json.dumps(document, ensure_ascii=False).encode("utf-8")
        return cls.raw(status, data, headers, document)

    @classmethod
    def raw(cls, status: int, data: bytes, headers: dict[str, str], document: Any = None) -> _Outcome:
        return cls(status, data, {**headers, "Content-Length": str(len(data))}, document)


def _api_outcome(response: ApiResponse, fault: Fault | None) -> _Outcome:
    status, document = response.status, response.body
    headers = {"Content-Type": JSON_API_MEDIA_TYPE, **response.headers}
    if fault is not None:
        if fault.mutate is not None:
            document = fault.mutate(copy.deepcopy(document))
            status = fault.status or status
        if fault.retry_after_header is not None:
            headers["Retry-After"] = fault.retry_after_header
    return _Outcome.json(status, document, headers)


def _fault_outcome(fault: Fault) -> _Outcome:
    if fault.drop_connection:
        return _Outcome(None)
    status = fault.status or 500
    headers: dict[str, str] = {}
    if fault.location is not None:
        return _Outcome.raw(status, b"", {"Location": fault.location})
    if fault.retry_after_header is not None:
        headers["Retry-After"] = fault.retry_after_header
    if fault.html:
        page = _HTML_PAGE.format(status=status).encode("utf-8")
        return _Outcome.raw(status, page, {"Content-Type": "text/html; charset=utf-8", **headers})
    if fault.raw_body is not None:
        return _Outcome.raw(status, fault.raw_body, {"Content-Type": JSON_API_MEDIA_TYPE, **headers})
    if status == 429:
        seconds = fault.retry_after if isinstance(fault.retry_after, int) else None
        if fault.retry_after is None and not fault.omit_retry_after:
            headers["Retry-After"] = "1"  # Klaviyo's usual answer to a busy second
            seconds = 1
        document = throttled_document(seconds)
    else:
        document = error_document(status, f"Simulated fault: HTTP {status} from the Klaviyo simulator.")
    return _Outcome.json(status, document, {"Content-Type": JSON_API_MEDIA_TYPE, **headers})


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
