"""Errors raised by the Klaviyo client and the report planner.

Each error says what happened and what to do about it; none of them ever carries the API key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of a JSON:API `errors` array, parsed leniently (Klaviyo adds keys the spec omits)."""

    code: str | None = None
    title: str | None = None
    detail: str | None = None
    pointer: str | None = None
    parameter: str | None = None

    @property
    def source(self) -> str | None:
        """Where Klaviyo says the problem is: a JSON pointer into the body or a query parameter name."""
        if self.pointer:
            return self.pointer
        if self.parameter:
            return f"parameter {self.parameter}"
        return None

    def describe(self) -> str:
        text = self.detail or self.title or self.code or "no detail given"
        return f"{text} (at {self.source})" if self.source else text


class KlaviyoError(Exception):
    """Base class of everything the client raises."""


class KlaviyoConfigError(KlaviyoError):
    """The client is not configured well enough to send a request (e.g. no API key)."""


@dataclass
class KlaviyoAPIError(KlaviyoError):
    """Klaviyo answered a request with a 4xx error.

    Attributes:
        status: the HTTP status code.
        method: the HTTP method of the request.
        path: the request path (never the key, never the full query with a cursor).
        errors: Klaviyo's `errors[]` entries, with their `detail` and `source`.
        hint: what the user can do about it.
    """

    status: int
    method: str
    path: str
    errors: list[ErrorDetail] = field(default_factory=list)
    hint: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        details = "; ".join(e.describe() for e in self.errors) or "no error body"
        text = f"Klaviyo refused {self.method} {self.path} with HTTP {self.status}: {details}"
        return f"{text}. {self.hint}" if self.hint else text


class KlaviyoAuthError(KlaviyoAPIError):
    """401 or 403: the key is wrong, revoked, or lacks a scope."""


class KlaviyoNotFoundError(KlaviyoAPIError):
    """404: the path or resource does not exist."""


@dataclass
class KlaviyoQuotaExhausted(KlaviyoError):
    """Klaviyo asked us to wait longer than we are willing to sleep: the daily quota is spent.

    The run fails fast so a scheduler can try again later instead of blocking a worker for hours.
    """

    path: str
    retry_after_seconds: float
    retry_at: dt.datetime
    local_budget: bool = False

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        who = (
            "this pipeline's own daily budget (KLAVIYO_REPORT_DAILY_LIMIT)"
            if self.local_budget
            else "Klaviyo's reporting quota for this account (shared by every integration using a private key)"
        )
        return (
            f"{self.path}: {who} is spent; the next request is allowed in "
            f"{self.retry_after_seconds:.0f} s, at {self.retry_at.isoformat(timespec='seconds')}. "
            "Nothing was lost: re-run the same partitions after that time."
        )


@dataclass
class KlaviyoServerError(KlaviyoError):
    """Klaviyo kept failing with 5xx (or the connection kept failing) after every retry."""

    method: str
    path: str
    attempts: int
    last_problem: str

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path} failed {self.attempts} times; last problem: {self.last_problem}. "
            "Klaviyo or the network is having trouble: try again later (KLAVIYO_MAX_ATTEMPTS sets the retries)."
        )


class KlaviyoResponseError(KlaviyoError):
    """Klaviyo answered 2xx with a body we cannot trust (not JSON, wrong shape, misaligned arrays).

    Nothing of such a response is kept.
    """


class ReportWindowError(KlaviyoError, ValueError):
    """A report range the API would refuse (before 2023-06-01, more than a year back, or inverted).

    Raised before any request is sent.
    """


class ReportBudgetError(KlaviyoError):
    """A planned run needs more report requests than today's budget has left; raised before sending any."""
