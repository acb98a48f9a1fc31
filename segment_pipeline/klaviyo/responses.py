"""Reading what an HTTP answer says beyond its body: Klaviyo's error entries and a 429's `Retry-After`."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re

import httpx

from .errors import ErrorDetail


def error_details(response: httpx.Response) -> list[ErrorDetail]:
    """Parse a JSON:API error body leniently; a non-JSON body (an HTML 500 page) becomes one plain entry."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown content type").split(";")[0]
        return [ErrorDetail(detail=f"the response body was not JSON ({kind}, {len(response.content)} bytes)")]
    entries = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return [ErrorDetail(detail="the error body had no `errors` array")]
    details = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        source = entry.get("source") if isinstance(entry.get("source"), dict) else {}
        details.append(
            ErrorDetail(
                code=entry.get("code"),
                title=entry.get("title"),
                detail=entry.get("detail"),
                pointer=source.get("pointer"),
                parameter=source.get("parameter"),
            )
        )
    return details


# RFC 9110: delay-seconds is a non-negative whole number; fractions are read too, anything else is not a delay
_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")
# a header is echoed in a log only this far
_SHOWN_HEADER = 60


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delay-seconds or an HTTP date (RFC 9110 allows both).

    Klaviyo sends whole seconds; a proxy in front of it may send a date. A date in the past means "now" (0).
    A missing or unreadable value (negative, NaN, junk, a date no calendar holds) gives `None`: the caller
    decides what waiting without advice means. The result is not bounded: `bounded_retry_after` caps it.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)  # may be inf for hundreds of digits; the caller caps it
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # "-0000" means UTC with no claim about local time
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = moment.timestamp() - (dt.datetime.now(dt.UTC).timestamp() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def bounded_retry_after(
    value: str | None, *, without_advice: float, longest: float, now: float | None = None
) -> tuple[float, str | None]:
    """How long to wait after a 429, never more than `longest`, and a note for the log when the header was odd.

    Args:
        value: the `Retry-After` header, if any.
        without_advice: the wait for a 429 without a readable header (one steady window).
        longest: the most any 429 is waited out or recorded for (the report quota window: Klaviyo's daily
            quota is the longest wait it ever asks for).
        now: the current time (time.time()), for an HTTP date.
    """
    seconds = retry_after_seconds(value, now=now)
    if value is None:
        return min(without_advice, longest), None
    header = value.strip()
    if len(header) > _SHOWN_HEADER:
        header = header[:_SHOWN_HEADER] + "..."
    if seconds is None:
        return min(without_advice, longest), (
            f"Retry-After {header!r} is neither a number of seconds nor an HTTP date; waiting one steady window "
            f"({without_advice:g} s) as for a 429 without it"
        )
    if seconds > longest:
        return longest, (
            f"Retry-After {header!r} asks for more than the {longest:g} s of the report quota window, the longest "
            f"wait Klaviyo sets; counted as {longest:g} s"
        )
    return seconds, None
