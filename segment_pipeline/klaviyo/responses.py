"""Reading what an HTTP answer says beyond its body: Klaviyo's error entries and a 429's `Retry-After`."""

from __future__ import annotations

import datetime as dt
import email.utils
import math

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


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delay-seconds or an HTTP date (RFC 9110 allows both).

    Klaviyo sends whole seconds; a proxy in front of it may send a date. A date in the past means "now" (0).
    A missing or unreadable value gives `None`: the caller decides what waiting without advice means.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # "-0000" means UTC with no claim about local time
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp() - (dt.datetime.now(dt.UTC).timestamp() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
