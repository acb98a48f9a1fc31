"""Scripted failures: the next N matching requests misbehave in a chosen way.

Faults are what a client meets in production and never in a happy-path test: 503s and 500 HTML pages from
the edge, throttling with `Retry-After`, slow answers, dropped connections, unparseable bodies, and bodies
that parse but break the contract (e.g. arrays whose length doesn't match `date_times`).

Error-style faults (a status without `mutate`, `html`, `raw_body`, `drop_connection`) answer before
authentication and rate limiting and don't use the account's quota. `delay_seconds` alone, `mutate` and
`delete_segment_ids` go through normal processing.

The faults a client of the reporting API must survive, and how to script them:

* a 429 with `Retry-After` in seconds: `add(status=429, retry_after=30)` (the default for a bare 429 is 1 s);
* a 429 with `Retry-After` as an HTTP date, as proxies send it: `add(retry_after=<aware datetime>)`, written
  as an IMF-fixdate (`Tue, 01 Dec 2026 09:00:03 GMT`);
* a 429 without `Retry-After`: `add(status=429, omit_retry_after=True)`;
* a series response missing a day: `add(mutate=drop_day(-1))` (removes the day from `date_times` and from
  every statistic, so the arrays stay aligned and only the day is missing);
* a response missing a segment that still exists: `add(mutate=drop_segment(0))`;
* a segment deleted between the listing and the report: `add(delete_segment_ids=("abc123",))` deletes it as
  the request arrives; the report then leaves it out of `results`, as Klaviyo does for a deleted segment, and
  `GET /api/segments/abc123` answers 404;
* a listing page whose `links.next` names another host (a proxy's bug, a tampered answer):
  `add(path="/api/segments", mutate=next_link_to("http://127.0.0.1:9999"))`; `ForeignHost` (foreign_host.py)
  is a server to name there, which records whatever reaches it;
* a redirect: `add(path="/api/segments", location="http://127.0.0.1:9999/api/segments")` answers 307 with
  that `Location`;
* an absurd `Retry-After`: any text goes out verbatim, `add(retry_after="99999999999999")`, `"NaN"`, `"-5"`,
  `"soon"`, or a far date, `add(retry_after=datetime(9999, 12, 31, tzinfo=UTC))`;
* a tags relationship with only `links`, as the spec allows: `add(path="/api/segments", mutate=tags_without_data())`;
* the second page of a listing, not the first: `skip=1` lets the first matching request through.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Mutator = Callable[[Any], Any]
RetryAfter = int | str | dt.datetime


def drop_day(position: int = -1) -> Mutator:
    """A `mutate` for series reports: leave one day out of `date_times` and out of every result.

    Args:
        position: Index of the day in `date_times` (negative counts from the end).
    """

    def mutate(body: Any) -> Any:
        attributes = body["data"]["attributes"]
        if attributes.get("date_times"):
            del attributes["date_times"][position]
            for result in attributes["results"]:
                for values in result["statistics"].values():
                    del values[position]
        return body

    return mutate


def drop_segment(position: int = 0) -> Mutator:
    """A `mutate` for reports: leave one segment (that still exists) out of `results`.

    Args:
        position: Index of the result to drop.
    """

    def mutate(body: Any) -> Any:
        results = body["data"]["attributes"]["results"]
        if results:
            del results[position]
        return body

    return mutate


def next_link_to(origin: str) -> Mutator:
    """A `mutate` for GET /api/segments: the page's `links.next` keeps its path and query on another origin.

    Args:
        origin: Scheme, host and port to name instead, e.g. "http://127.0.0.1:9999". A page without a next
            link gets one (its own `links.self` on that origin), so even a last page points elsewhere.
    """

    def mutate(body: Any) -> Any:
        links = body.setdefault("links", {})
        split = urlsplit(links.get("next") or links["self"])
        links["next"] = origin.rstrip("/") + split.path + (f"?{split.query}" if split.query else "")
        return body

    return mutate


def tags_without_data(positions: tuple[int, ...] | None = None) -> Mutator:
    """A `mutate` for GET /api/segments?include=tags: the tags relationship keeps only its `links`.

    Args:
        positions: Indexes in the page's `data` to change; `None` for every segment of the page.
    """

    def mutate(body: Any) -> Any:
        for index, resource in enumerate(body.get("data") or []):
            if positions is None or index in positions:
                resource.get("relationships", {}).get("tags", {}).pop("data", None)
        return body

    return mutate


def retry_after_header(value: RetryAfter | None) -> str | None:
    """The `Retry-After` header for a value: seconds as given, a datetime as an HTTP date, text verbatim."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("a Retry-After date must be timezone-aware")
        return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)
    return str(value)


@dataclass
class Fault:
    """One scripted failure and how many more requests it applies to.

    Attributes:
        path: Exact request path (no query string) it applies to.
        method: HTTP method it applies to; `None` for any.
        times: How many matching requests it still applies to; `None` for every one until cleared.
        status: Status code of the answer (for `mutate`, overrides the normal status when given).
        html: Answer with an HTML error page instead of JSON.
        retry_after: Value of a `Retry-After` header to add: seconds, a datetime (sent as an HTTP date) or text.
        omit_retry_after: Send a 429 without any `Retry-After` header.
        delay_seconds: Wait this long before answering.
        drop_connection: Close the socket without any response.
        raw_body: Send these bytes as the body.
        mutate: Transform the normal JSON body before it is sent.
        delete_segment_ids: Delete these segments from the account when the request arrives (before it is
            answered), as if a user deleted them between the listing and this request.
        location: Answer with a redirect (status 307 unless given) to this `Location`.
        skip: Let this many matching requests through unchanged before the fault applies.
    """

    path: str
    method: str | None = None
    times: int | None = 1
    status: int | None = None
    html: bool = False
    retry_after: RetryAfter | None = None
    omit_retry_after: bool = False
    delay_seconds: float = 0.0
    drop_connection: bool = False
    raw_body: bytes | None = None
    mutate: Mutator | None = None
    delete_segment_ids: tuple[str, ...] = ()
    location: str | None = None
    skip: int = 0
    used: int = field(default=0, init=False)
    seen: int = field(default=0, init=False)

    @property
    def retry_after_header(self) -> str | None:
        """The `Retry-After` header this fault adds, if any."""
        return None if self.omit_retry_after else retry_after_header(self.retry_after)

    @property
    def short_circuits(self) -> bool:
        """Whether the fault answers by itself instead of letting the request be processed."""
        return (
            self.drop_connection
            or self.html
            or self.raw_body is not None
            or self.location is not None
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
            parts.append(f"retry_after={self.retry_after_header}")
        if self.omit_retry_after:
            parts.append("no_retry_after")
        if self.delete_segment_ids:
            parts.append(f"delete={','.join(self.delete_segment_ids)}")
        if self.location is not None:
            parts.append(f"location={self.location}")
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
        retry_after: RetryAfter | None = None,
        omit_retry_after: bool = False,
        delay_seconds: float = 0.0,
        drop_connection: bool = False,
        raw_body: bytes | None = None,
        mutate: Mutator | None = None,
        delete_segment_ids: tuple[str, ...] = (),
        location: str | None = None,
        skip: int = 0,
    ) -> Fault:
        """Script a failure for the next `times` requests to `path`.

        Args:
            path: Exact request path, e.g. "/api/segments".
            method: Only for this HTTP method; `None` for any.
            times: Number of requests it applies to; `None` for all until `clear()`.
            status: Status to answer with. Defaults to 500 for `html`, 200 for `raw_body` and 429 when only
                `retry_after` or `omit_retry_after` is given. With `mutate`, replaces the normal status.
            html: Answer with an HTML error page.
            retry_after: Add `Retry-After`: whole seconds, or an aware datetime sent as an HTTP date (or any
                text, verbatim); a 429 gets Klaviyo's throttled body.
            omit_retry_after: With `status=429`: answer without a `Retry-After` header.
            delay_seconds: Sleep this long first (alone: then answer normally).
            drop_connection: Close the connection without answering.
            raw_body: Send these exact bytes.
            mutate: Function from the normal JSON body to the body to send (see `drop_day`, `drop_segment`).
            delete_segment_ids: Delete these segments as the request arrives; the request is then answered
                normally (a report leaves them out of `results`).
            location: Answer with a redirect to this URL (status 307 unless `status` says otherwise).
            skip: Let the first `skip` matching requests through unchanged (e.g. 1: the second page).

        Returns:
            The fault, whose `used` counter tells how often it fired.

        Raises:
            ValueError: If the fault would not change anything, or `times` is below 1.
        """
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for unlimited)")
        if skip < 0:
            raise ValueError("skip must be >= 0")
        if status is None:
            if location is not None:
                status = 307
            elif html:
                status = 500
            elif raw_body is not None:
                status = 200
            elif (retry_after is not None or omit_retry_after) and mutate is None:
                status = 429
        fault = Fault(
            path=path,
            method=method,
            times=times,
            status=status,
            html=html,
            retry_after=retry_after,
            omit_retry_after=omit_retry_after,
            delay_seconds=delay_seconds,
            drop_connection=drop_connection,
            raw_body=raw_body,
            mutate=mutate,
            delete_segment_ids=tuple(delete_segment_ids),
            location=location,
            skip=skip,
        )
        retry_after_header(retry_after)  # a naive datetime is refused now, not when the request arrives
        if not (
            fault.short_circuits or fault.mutate is not None or fault.delay_seconds > 0 or fault.delete_segment_ids
        ):
            raise ValueError(
                "a fault needs a status, html, raw_body, drop_connection, mutate, delay_seconds or delete_segment_ids"
            )
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
                    fault.seen += 1
                    if fault.seen <= fault.skip:
                        return None  # this request passes unchanged
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
