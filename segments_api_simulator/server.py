"""The HTTP side: the platform's one endpoint, its errors and faults, and the admin endpoints tests use.

API (the key as `Authorization: Bearer <key>`, one workspace per key):
    GET /api/v1/segments?page=&limit=&id=   -> {"data": [...], "pagination": {page, limit, total, totalPages}}

Admin (no key; for tests and the demo, on the loopback address the server binds):
    GET  /_admin/clock                      POST /_admin/clock {"advance_hours": h}
    POST /_admin/workspaces {"name", "api_key", "segments"}
    POST /_admin/workspaces/<ws>/segments {"name"?}          -> the new segment
    POST /_admin/workspaces/<ws>/segments/<id> {"filters"?, "matchType"?, "name"?, "description"?}
    DELETE /_admin/workspaces/<ws>/segments/<id>
    POST /_admin/workspaces/<ws>/revoke     (its key then gets 401)
    POST /_admin/faults {"kind", "times", "page", "workspace", "retry_after", "variant", "location"}
    GET  /_admin/truth?workspace=<ws>       every recount up to the clock
    GET  /_admin/requests                   API requests per workspace (never a key)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .world import DEFAULT_LIMIT, MAX_LIMIT, Fault, World

SEGMENTS_PATH = "/api/v1/segments"
ADMIN_PREFIX = "/_admin/"
_FAULT_FIELDS = {"kind", "times", "page", "workspace", "retry_after", "variant", "location"}


class _Answer(Exception):
    """An answer decided early (an error): its status, body and headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, {"error": {"code": code, "message": message}}, headers)


def _whole(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise _error(400, "invalid_parameter", f"{name} must be an integer") from None


def list_segments(world: World, authorization: str | None, query: dict[str, list[str]]) -> _Answer:
    """The API: authenticate, apply faults, page."""
    key = authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else None
    workspace = world.workspace_for_key(key)
    with world.lock:
        name = workspace.name if workspace else None
        world.requests[name] = world.requests.get(name, 0) + 1
    if workspace is None or workspace.revoked:
        raise _error(401, "unauthorized", "Invalid or revoked API key")
    page = _whole(query, "page", 1)
    limit = _whole(query, "limit", DEFAULT_LIMIT)
    if page < 1:
        raise _error(400, "invalid_parameter", "page must be at least 1")
    if not 1 <= limit <= MAX_LIMIT:
        raise _error(400, "invalid_parameter", f"limit must be between 1 and {MAX_LIMIT}")
    fault = world.take_fault(workspace.name, page)
    if fault is not None and fault.kind == "redirect":
        raise _Answer(302, {}, {"Location": fault.location or "http://127.0.0.1:9/"})
    if fault is not None and fault.kind in ("429", "500"):
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        raise _error(int(fault.kind), "rate_limited" if fault.kind == "429" else "internal", "Try again", headers)
    segments = world.listing(workspace)
    if query.get("id"):
        segments = [segment for segment in segments if segment["id"] == query["id"][-1]]
        if not segments:
            raise _error(404, "not_found", "Segment not found")
    total = len(segments)
    body: dict[str, Any] = {
        "data": segments[(page - 1) * limit : page * limit],
        "pagination": {"page": page, "limit": limit, "total": total, "totalPages": -(-total // limit)},
    }
    if fault is not None and fault.kind == "malformed":
        return _malformed(body, fault)
    return _Answer(200, body)


def _malformed(body: dict[str, Any], fault: Fault) -> _Answer:
    if fault.variant == "truncated_json":
        return _Answer(200, json.dumps(body)[:40])
    if fault.variant == "no_pagination":
        del body["pagination"]
    elif fault.variant == "no_data":
        del body["data"]
    elif fault.variant == "bad_segment" and body["data"]:
        body["data"][0]["cachedCount"] = "many"
    elif fault.variant == "shifting_total":
        body["pagination"]["total"] += 7
        body["pagination"]["totalPages"] += 1
    return _Answer(200, body)


def admin(world: World, method: str, path: str, query: dict[str, list[str]], body: Any) -> _Answer:
    parts = path[len(ADMIN_PREFIX) :].strip("/").split("/")
    try:
        if parts == ["clock"]:
            if method == "POST":
                world.advance(float(body.get("advance_hours", 0)) * 3600)
            return _Answer(200, {"now": world.now.isoformat(), "epoch": world.epoch.isoformat()})
        if parts == ["workspaces"] and method == "POST":
            workspace = world.add_workspace(str(body["name"]), str(body["api_key"]), int(body.get("segments", 0)))
            return _Answer(200, {"name": workspace.name, "segments": len(workspace.segments)})
        if parts == ["faults"] and method == "POST":
            unknown = set(body) - _FAULT_FIELDS
            if unknown or body.get("kind") not in ("429", "500", "redirect", "malformed"):
                raise _error(
                    400, "invalid_fault", f"kind must be 429, 500, redirect or malformed; unknown fields {unknown}"
                )
            with world.lock:
                world.faults.append(Fault(**body))
            return _Answer(200, {"faults": len(world.faults)})
        if parts == ["truth"]:
            return _Answer(200, world.truth(query["workspace"][-1]))
        if parts == ["requests"]:
            with world.lock:
                return _Answer(200, {str(name): count for name, count in world.requests.items()})
        if len(parts) == 3 and parts[0] == "workspaces" and parts[2] == "revoke" and method == "POST":
            world.revoke(parts[1])
            return _Answer(200, {"revoked": parts[1]})
        if len(parts) == 3 and parts[0] == "workspaces" and parts[2] == "segments" and method == "POST":
            segment = world.add_segment(parts[1], body.get("name"))
            with world.lock:
                return _Answer(200, segment.document())
        if len(parts) == 4 and parts[0] == "workspaces" and parts[2] == "segments":
            if method == "DELETE":
                world.delete_segment(parts[1], parts[3])
                return _Answer(200, {"deleted": parts[3]})
            if method == "POST":
                segment = world.edit_segment(parts[1], parts[3], body)
                with world.lock:
                    return _Answer(200, segment.document())
    except (KeyError, ValueError, TypeError) as exc:
        raise _error(400, "invalid_admin_request", f"{type(exc).__name__}: {exc}") from None
    raise _error(404, "not_found", f"no admin endpoint {method} {path}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "SegmentsApiSimulator/1"
    timeout = 60

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a request line could carry nothing secret, but test output should not fill with them."""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        world = self.server.world
        try:
            if split.path.startswith(ADMIN_PREFIX):
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    raise _error(400, "invalid_json", "the body is not JSON") from None
                answer = admin(world, self.command, split.path, query, body if isinstance(body, dict) else {})
            elif split.path.rstrip("/") == SEGMENTS_PATH and self.command == "GET":
                answer = list_segments(world, self.headers.get("Authorization"), query)
            else:
                raise _error(404, "not_found", f"no endpoint {self.command} {split.path}")
        except _Answer as early:
            answer = early
        except Exception as exc:  # a simulator bug must surface as a 500, not a hung client
            answer = _error(500, "simulator_error", f"{type(exc).__name__}: {exc}")
        text = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
        payload = text.encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], world: World) -> None:
        super().__init__(address, _Handler)
        self.world = world


class SegmentsApiSimulator:
    """The simulator as a running server: `SegmentsApiSimulator(World(seed=3)).start()`, then `.base_url`."""

    def __init__(self, world: World | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.world = world or World()
        self._server = _Server((host, port), self.world)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SegmentsApiSimulator:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SegmentsApiSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
