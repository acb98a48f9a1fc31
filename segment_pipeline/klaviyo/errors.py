"""Errors raised by the Klaviyo client and the report planner.

Each error says what happened and what to do about it; none of them ever carries the API key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..wording import plural


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


# Which limit refused a report request locally: this pipeline's own count, or a block Klaviyo set with a 429.
PIPELINE_LIMIT = "pipeline_limit"
KLAVIYO_QUOTA = "klaviyo_quota"


def _moment(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "an unknown time"


def window_text(seconds: float) -> str:
    """'24 hours' for the real quota day, seconds for a window a test shortened."""
    return "24 hours" if seconds == 24 * 60 * 60 else f"{seconds:g} s"


@dataclass
class KlaviyoQuotaExhausted(KlaviyoError):
    """A report request was refused before or while sending it: a daily quota is spent until `retry_at`.

    The run fails fast so a scheduler can try again later instead of blocking a worker for hours.

    Attributes:
        path: the request path.
        retry_after_seconds: seconds from the refusal until `retry_at`.
        retry_at: when the next report request is allowed (UTC).
        kind: PIPELINE_LIMIT (this pipeline's own KLAVIYO_REPORT_DAILY_LIMIT over the rolling window; `retry_at`
            is when the oldest counted request ages out) or KLAVIYO_QUOTA (Klaviyo answered 429 asking for a
            wait longer than KLAVIYO_MAX_RETRY_AFTER; `retry_at` is the end of that block).
        account_id: the account whose quota it is, when known.
        blocked_at: KLAVIYO_QUOTA only: when the 429 that set the block was received.
        daily_limit: PIPELINE_LIMIT only: KLAVIYO_REPORT_DAILY_LIMIT.
        window_seconds: PIPELINE_LIMIT only: the length of the rolling window the limit is counted over.
    """

    path: str
    retry_after_seconds: float
    retry_at: dt.datetime
    kind: str = KLAVIYO_QUOTA
    account_id: str | None = None
    blocked_at: dt.datetime | None = None
    daily_limit: int | None = None
    window_seconds: float | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @property
    def local_budget(self) -> bool:
        """Whether this pipeline's own limit refused the request (not a block recorded from Klaviyo)."""
        return self.kind == PIPELINE_LIMIT

    def __str__(self) -> str:
        account = f" of account {self.account_id}" if self.account_id else ""
        when = f"{self.retry_after_seconds:.0f} s, at {_moment(self.retry_at)}"
        if self.local_budget:
            who = (
                f"this pipeline's own limit{account} (KLAVIYO_REPORT_DAILY_LIMIT={self.daily_limit} report "
                f"requests per {window_text(self.window_seconds or 0)}, counted by this pipeline) is used up; "
                f"the oldest counted request ages out in {when}"
            )
        else:
            who = (
                f"Klaviyo's reporting quota{account} (shared by every integration using a private key) is "
                f"spent: Klaviyo answered 429 at {_moment(self.blocked_at)}, and the next request is allowed "
                f"in {when}"
            )
        return f"{self.path}: {who}. Nothing was lost: re-run the same partitions after that time."


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


class KlaviyoForeignHostError(KlaviyoResponseError):
    """A response pointed the client at another address than KLAVIYO_BASE_URL; nothing was sent there.

    The API key goes with every request, so a request goes only to the configured scheme, host and port.
    """


class ReportWindowError(KlaviyoError, ValueError):
    """A report range the API would refuse (before 2023-06-01, more than a year back, or inverted).

    Raised before any request is sent.
    """


@dataclass
class ReportBudgetError(KlaviyoError):
    """A planned piece of work needs more report requests than the budget has left; raised before sending any
    of them (what the run did before it, e.g. loading the series, stays done).

    Attributes:
        needed: report requests the run needs.
        remaining: report requests the budget allows now.
        kind: PIPELINE_LIMIT (this pipeline's own count is too high) or KLAVIYO_QUOTA (a block recorded from
            Klaviyo's 429 is in force; nothing may be sent before `retry_at`).
        retry_at: when the budget next grows: the oldest counted request ages out (PIPELINE_LIMIT), or
            Klaviyo's block ends (KLAVIYO_QUOTA). `None` when nothing is counted yet.
        account_id: the account whose budget it is.
        daily_limit: KLAVIYO_REPORT_DAILY_LIMIT.
        window_seconds: the length of the rolling window the limit is counted over.
        blocked_at: KLAVIYO_QUOTA only: when the 429 that set the block was received.
        purpose: what the requests were for, as the message names it (e.g. "the reconciliation check").
    """

    needed: int
    remaining: int
    kind: str
    retry_at: dt.datetime | None
    account_id: str | None = None
    daily_limit: int | None = None
    window_seconds: float | None = None
    blocked_at: dt.datetime | None = None
    purpose: str = "this step"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @property
    def _none_sent(self) -> str:
        return "That request was not sent" if self.needed == 1 else f"None of these {self.needed} requests was sent"

    def __str__(self) -> str:
        account = f" for account {self.account_id}" if self.account_id else ""
        if self.kind == KLAVIYO_QUOTA:
            return (
                f"{self.purpose} needs {plural(self.needed, 'report request')} but Klaviyo's reporting "
                f"quota{account} is spent: Klaviyo answered 429 at {_moment(self.blocked_at)} and allows no report "
                f"request before {_moment(self.retry_at)}. {self._none_sent}; run it again after that time."
            )
        ages_out = f"; the oldest counted request ages out at {_moment(self.retry_at)}" if self.retry_at else ""
        return (
            f"{self.purpose} needs {plural(self.needed, 'report request')} but only {self.remaining} "
            f"{'is' if self.remaining == 1 else 'are'} left{account} "
            f"under this pipeline's own limit (KLAVIYO_REPORT_DAILY_LIMIT={self.daily_limit} per "
            f"{window_text(self.window_seconds or 0)}, counted across runs){ages_out}. "
            f"{self._none_sent}. Run it again after that time, or raise KLAVIYO_REPORT_DAILY_LIMIT if Klaviyo "
            "allows more for this account."
        )


class ReportLedgerError(KlaviyoError):
    """The report ledger file is damaged or not shaped like a ledger; nothing is sent until a person looks.

    Resetting the count silently could overspend Klaviyo's quota, which every integration on the account shares.
    """


@dataclass
class IncompleteSeriesResponse(KlaviyoResponseError):
    """A series response lacks days of the requested window or requested segments; none of it is kept.

    Attributes:
        missing_days: requested days absent from `date_times`.
        missing_segment_ids: requested segment ids absent from `results`.
        window: the requested window, as "start..end".
    """

    missing_days: tuple[dt.date, ...]
    missing_segment_ids: tuple[str, ...]
    window: str

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.missing_days:
            parts.append(f"days {abbreviated([d.isoformat() for d in self.missing_days])} are missing from date_times")
        if self.missing_segment_ids:
            parts.append(f"segments {abbreviated(self.missing_segment_ids)} are missing from results")
        return (
            f"the segment series response for {self.window} is incomplete: {' and '.join(parts)}. None of it was "
            "kept; run again, and report it if it persists."
        )


def abbreviated(items, shown: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 12 more': names enough to look things up without flooding a log."""
    items = list(items)
    text = ", ".join(str(item) for item in items[:shown])
    return f"{text} and {len(items) - shown} more" if len(items) > shown else text


# a value from outside is echoed in a message only this far
_SHOWN_CHARACTERS = 120


def shown(value: object) -> str:
    """A value from outside (a header, a link, a stored number), cut short for a message; text is quoted."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 3] + "..."
