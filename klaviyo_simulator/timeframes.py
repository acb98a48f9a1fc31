"""Report timeframes: from the request's `timeframe` object to an inclusive range of account-local days.

Klaviyo reads the calendar date written in a custom `start`/`end` as a day in the account timezone and ignores
the offset ("2024-03-01T23:00:00-08:00" means March 1st, whatever the account's zone). Both the start day and
the end day are part of the window.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from .error_documents import invalid
from .rules import MAX_HISTORY_DAYS, REPORTING_DATA_FLOOR, DayWindow

TIMEFRAME_POINTER = "/data/attributes/timeframe"

TIMEFRAME_KEYS = (
    "today",
    "yesterday",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
    "this_year",
    "last_year",
    "last_7_days",
    "last_30_days",
    "last_90_days",
    "last_365_days",
    "last_3_months",
    "last_12_months",
)


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _months_back(day: dt.date, months: int) -> dt.date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def window_for_key(key: str, today: dt.date) -> DayWindow:
    """The days a predefined timeframe key covers.

    "last_N_days" runs from N days ago through today, which is why Klaviyo's own `last_7_days` example has
    eight `date_times`. Weeks start on Sunday, as in Klaviyo's (US) reporting UI.

    Args:
        key: One of `TIMEFRAME_KEYS`.
        today: Today in the account timezone.

    Returns:
        The inclusive window.

    Raises:
        KeyError: If the key is unknown.
    """
    week_start = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - dt.timedelta(days=1)
    windows = {
        "today": (today, today),
        "yesterday": (today - dt.timedelta(days=1), today - dt.timedelta(days=1)),
        "this_week": (week_start, today),
        "last_week": (week_start - dt.timedelta(days=7), week_start - dt.timedelta(days=1)),
        "this_month": (first_of_month, today),
        "last_month": (last_month_end.replace(day=1), last_month_end),
        "this_year": (dt.date(today.year, 1, 1), today),
        "last_year": (dt.date(today.year - 1, 1, 1), dt.date(today.year - 1, 12, 31)),
        "last_7_days": (today - dt.timedelta(days=7), today),
        "last_30_days": (today - dt.timedelta(days=30), today),
        "last_90_days": (today - dt.timedelta(days=90), today),
        "last_365_days": (today - dt.timedelta(days=365), today),
        "last_3_months": (_months_back(today, 3), today),
        "last_12_months": (_months_back(today, 12), today),
    }
    start, end = windows[key]
    return DayWindow(start, end)


def _custom_day(value: Any, name: str) -> dt.date:
    pointer = f"{TIMEFRAME_POINTER}/{name}"
    if not isinstance(value, str):
        raise invalid(f"timeframe.{name} must be a date-time string with a UTC offset.", pointer=pointer)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise invalid(f"{value!r} is not a valid ISO 8601 date-time.", pointer=pointer) from None
    if "T" not in value.upper() or parsed.tzinfo is None:
        raise invalid(
            f"timeframe.{name} must be a date-time with a UTC offset, e.g. 2024-01-05T00:00:00+00:00; got {value!r}.",
            pointer=pointer,
        )
    # the written calendar date is the account-local day; the offset is ignored on purpose
    return parsed.date()


def parse_timeframe(timeframe: Any, today: dt.date) -> DayWindow:
    """Read a request's `timeframe` (a `{"key"}` or a `{"start", "end"}` object) as a day window.

    Args:
        timeframe: The `data.attributes.timeframe` value.
        today: Today in the account timezone.

    Returns:
        The window as written; limits are checked by `check_window`.

    Raises:
        ApiError: 400 when the object is malformed.
    """
    if not isinstance(timeframe, dict):
        raise invalid("timeframe must be an object with either a key or a start and end.", pointer=TIMEFRAME_POINTER)
    keys = set(timeframe)
    if keys == {"key"}:
        key = timeframe["key"]
        if key not in TIMEFRAME_KEYS:
            raise invalid(
                f"{key!r} is not a valid timeframe key. Valid keys: {', '.join(TIMEFRAME_KEYS)}.",
                pointer=f"{TIMEFRAME_POINTER}/key",
            )
        return window_for_key(key, today)
    if keys == {"start", "end"}:
        return DayWindow(_custom_day(timeframe["start"], "start"), _custom_day(timeframe["end"], "end"))
    if "key" in keys and keys & {"start", "end"}:
        raise invalid("Use either a timeframe key or a custom start and end, not both.", pointer=TIMEFRAME_POINTER)
    if keys & {"start", "end"}:
        missing = ({"start", "end"} - keys).pop() if len(keys & {"start", "end"}) == 1 else None
        if missing:
            raise invalid(
                f"A custom timeframe needs both start and end; {missing} is missing.",
                pointer=f"{TIMEFRAME_POINTER}/{missing}",
            )
    raise invalid(f"Unexpected timeframe fields: {', '.join(sorted(keys)) or 'none'}.", pointer=TIMEFRAME_POINTER)


def floor_message() -> str:
    """Klaviyo's wording for a start before the reporting floor."""
    floor = REPORTING_DATA_FLOOR
    return f"Cannot query for segment data before {floor:%B} {_ordinal(floor.day)}, {floor.year}"


def check_window(window: DayWindow, today: dt.date, *, max_days: int | None) -> None:
    """Enforce the reporting window rules, in the order Klaviyo reports them.

    Args:
        window: The requested days.
        today: Today in the account timezone.
        max_days: Longest allowed window in days (both ends counted), or `None` for the one-year cap only.

    Raises:
        ApiError: 400 naming the broken rule.
    """
    if window.end < window.start:
        raise invalid(
            f"The timeframe end ({window.end}) is before its start ({window.start}).",
            pointer=f"{TIMEFRAME_POINTER}/end",
        )
    if window.start < REPORTING_DATA_FLOOR:
        raise invalid(floor_message(), pointer=f"{TIMEFRAME_POINTER}/start")
    oldest = today - dt.timedelta(days=MAX_HISTORY_DAYS)
    if window.start < oldest:
        raise invalid(
            f"The timeframe cannot start more than one year ({MAX_HISTORY_DAYS} days) before today; "
            f"the earliest start today is {oldest}.",
            pointer=f"{TIMEFRAME_POINTER}/start",
        )
    if max_days is not None and window.days > max_days:
        raise invalid(
            f"The timeframe cannot be longer than {max_days} days with the daily interval; "
            f"{window.start} to {window.end} is {window.days} days.",
            pointer=TIMEFRAME_POINTER,
        )
    if (window.end - window.start).days > MAX_HISTORY_DAYS:
        raise invalid(
            f"The timeframe cannot be longer than one year; {window.start} to {window.end} is {window.days} days.",
            pointer=TIMEFRAME_POINTER,
        )
