"""Scripted failures: the next N matching requests misbehave in a chosen way.

Faults are what a client meets in production and never in a happy-path test: 503s and 500 HTML pages from
the edge, throttling with `Retry-After`, slow answers, dropped connections, unparseable bodies, and bodies
that parse but break the contract (e.g. arrays whose length doesn't match `date_times`).

Error-style faults (a status without `mutate`, `html`, `raw_body`, `drop_connection`) answer before
authentication and rate limiting and don't use the account's quota. `delay_seconds` alone and `mutate` go
through normal processing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Mutator = Callable[[Any], Any]


@dataclass
class Fault:
    """One scripted failure and how many more requests it applies to.

    Attributes:
        path: Exact request path (no query string) it applies to.
        method: HTTP method it applies to; `None` for any.
        times: How many matching requests it still applies to; `None` for every one until cleared.
        status: Status code of the answer (for `mutate`, overrides the normal status when given).
        html: Answer with an HTML error page instead of JSON.
        retry_after: Value of a `Retry-After` header to add.
        delay_seconds: Wait this long before answering.
        drop_connection: Close the socket without any response.
        raw_body: Send these bytes as the body.
        mutate: Transform the normal JSON body before it is sent.
    """

    path: str
    method: str | None = None
    times: int | None = 1
    status: int | None = None
    html: bool = False
    retry_after: int | None = None
    delay_seconds: float = 0.0
    drop_connection: bool = False
    raw_body: bytes | None = None
    mutate: Mutator | None = None
    used: int = field(default=0, init=False)

    @property
    def short_circuits(self) -> bool:
        """Whether the fault answers by itself instead of letting the request be processed."""
        return (
            self.drop_connection
            or self.html
            or self.raw_body is not None
            or (self.status is not None and self.mutate is None)
        )

    def describe(self) -> str:
        """A short label for logs and the request record."""
        parts = []
        if self.drop_connection:
            parts.append("drop_connection")
        if self.html:
            parts.append("html")
        if self.raw_body is not None:
            parts.append("raw_body")
        if self.mutate is not None:
            parts.append("mutate")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after}")
        if self.delay_seconds:
            parts.append(f"delay={self.delay_seconds:g}s")
        return ",".join(parts)

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return path == self.path and (self.method is None or self.method.upper() == method.upper())


class FaultPlan:
    """The queue of scripted faults; the first matching fault with uses left applies to a request."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        path: str = "/api/segment-series-reports",
        method: str | None = None,
        times: int | None = 1,
        status: int | None = None,
        *,
        html: bool = False,
        retry_after: int | None = None,
        delay_seconds: float = 0.0,
        drop_connection: bool = False,
        raw_body: bytes | None = None,
        mutate: Mutator | None = None,
    ) -> Fault:
        """Script a failure for the next `times` requests to `path`.

        Args:
            path: Exact request path, e.g. "/api/segments".
            method: Only for this HTTP method; `None` for any.
            times: Number of requests it applies to; `None` for all until `clear()`.
            status: Status to answer with. Defaults to 500 for `html`, 200 for `raw_body` and 429 when only
                `retry_after` is given. With `mutate`, replaces the normal status.
            html: Answer with an HTML error page.
            retry_after: Add `Retry-After: <n>`; a 429 gets Klaviyo's throttled body.
            delay_seconds: Sleep this long first (alone: then answer normally).
            drop_connection: Close the connection without answering.
            raw_body: Send these exact bytes.
            mutate: Function from the normal JSON body to the body to send.

        Returns:
            The fault, whose `used` counter tells how often it fired.

        Raises:
            ValueError: If the fault would not change anything, or `times` is below 1.
        """
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for unlimited)")
        if status is None:
            if html:
                status = 500
            elif raw_body is not None:
                status = 200
            elif retry_after is not None and mutate is None:
                status = 429
        fault = Fault(
            path=path,
            method=method,
            times=times,
            status=status,
            html=html,
            retry_after=retry_after,
            delay_seconds=delay_seconds,
            drop_connection=drop_connection,
            raw_body=raw_body,
            mutate=mutate,
        )
        if not (fault.short_circuits or fault.mutate is not None or fault.delay_seconds > 0):
            raise ValueError("a fault needs a status, html, raw_body, drop_connection, mutate or delay_seconds")
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching a request.

        Args:
            method: The request method.
            path: The request path.

        Returns:
            The fault to apply, or `None`.
        """
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path) and (fault.times is None or fault.used < fault.times):
                    fault.used += 1
                    return fault
        return None

    def clear(self) -> None:
        """Remove every scripted fault."""
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        """Faults that still have uses left."""
        with self._lock:
            return [f for f in self._faults if f.times is None or f.used < f.times]
