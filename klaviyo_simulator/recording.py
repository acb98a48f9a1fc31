"""The request log: what each client sent and what the simulator answered, for assertions in tests."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

REDACTED = "REDACTED"


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping that keeps the names as sent.

    Args:
        items: `(name, value)` pairs; a later duplicate replaces an earlier one.
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items:
            self._items[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


def redact_headers(items: Iterable[tuple[str, str]]) -> Headers:
    """Copy request headers with the credentials replaced, so logs and failure output never show a key.

    Args:
        items: `(name, value)` pairs as received.

    Returns:
        Headers where `Authorization` keeps only its scheme (e.g. "Klaviyo-API-Key REDACTED").
    """
    redacted = []
    for name, value in items:
        if name.lower() == "authorization":
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} {REDACTED}".strip()
        redacted.append((name, value))
    return Headers(redacted)


@dataclass
class RecordedRequest:
    """One request to the Klaviyo API surface and the simulator's answer.

    Attributes:
        method: HTTP method.
        path: Path without the query string.
        query: Query parameters, last value per name (decoded).
        query_items: Every `(name, value)` pair in order, for repeated parameters.
        headers: Request headers (case-insensitive), `Authorization` redacted.
        json: Parsed request body, or `None` when absent or not JSON.
        status: Response status, or `None` when the connection was dropped (or the answer is still pending).
        response_json: Parsed response body, or `None` (no body, HTML, raw bytes).
        response_headers: Response headers.
        fault: Label of the scripted fault that shaped the answer, or `None` for a normal answer.
        started: Monotonic time the request arrived.
        duration: Seconds spent answering (including any scripted delay).
        completed: Whether the answer has been decided (requests are logged on arrival).
        account: Name of the simulated account whose key the request carried (revoked or not), or `None`.
    """

    method: str
    path: str
    query: dict[str, str]
    query_items: list[tuple[str, str]]
    headers: Headers
    json: Any
    status: int | None = None
    response_json: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    started: float = 0.0
    duration: float = 0.0
    completed: bool = False
    account: str | None = None


class RequestLog:
    """Thread-safe list of recorded requests, optionally capped to the most recent ones.

    Args:
        max_entries: Keep only this many (for long-running processes); `None` keeps all.
    """

    def __init__(self, max_entries: int | None = None) -> None:
        self._entries: collections.deque[RecordedRequest] = collections.deque(maxlen=max_entries)
        self._lock = threading.Lock()

    def append(self, entry: RecordedRequest) -> None:
        """Add a finished request."""
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._entries.clear()

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None, account: str | None = None
    ) -> int:
        """Count recorded requests matching every given criterion.

        Args:
            method: HTTP method (case-insensitive).
            path: Exact path.
            status: Response status.
            account: Name of the account whose key the request carried.

        Returns:
            The number of matches.
        """
        return sum(
            1
            for entry in self.entries()
            if (method is None or entry.method == method.upper())
            and (path is None or entry.path == path)
            and (status is None or entry.status == status)
            and (account is None or entry.account == account)
        )


@dataclass
class Stats:
    """Counters that survive `reset_log()`: requests by path and status, and report requests served."""

    by_path: dict[str, dict[str, int]] = field(default_factory=dict)
    report_requests_served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, path: str, status: int | None, is_report: bool) -> None:
        """Count one finished request."""
        key = "dropped" if status is None else str(status)
        with self._lock:
            per_status = self.by_path.setdefault(path, {})
            per_status[key] = per_status.get(key, 0) + 1
            if is_report and status == 200:
                self.report_requests_served += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        with self._lock:
            return {
                "requests_by_path": {path: dict(counts) for path, counts in self.by_path.items()},
                "report_requests_served": self.report_requests_served,
            }
