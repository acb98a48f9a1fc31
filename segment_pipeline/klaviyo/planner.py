"""Turns "these segments, these days" into the fewest segment-series report requests Klaviyo allows.

Klaviyo's daily series covers at most 60 days and 100 segment ids per request, and the reporting budget is
2 requests a minute and 225 a day, so the number of requests decides how long a backfill takes. The plan is
ceil(segments / 100) x ceil(days / 60) requests, in windows that neither overlap nor leave gaps.

Klaviyo reads a custom timeframe's calendar dates in the account's timezone (the offset is ignored) and counts
the end day as included, so a window is a pair of inclusive account-local dates and the next window starts the
day after the previous one ends: no day is requested twice.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .errors import ReportWindowError
from .limits import (
    MAX_DAYS_PER_DAILY_SERIES,
    MAX_HISTORY_DAYS,
    MAX_SEGMENT_IDS_PER_REPORT,
    REPORTING_DATA_FLOOR,
)


@dataclass(frozen=True, order=True)
class DayWindow:
    """An inclusive range of account-local calendar days."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


@dataclass(frozen=True)
class SeriesRequest:
    """One POST /api/segment-series-reports: up to 100 segment ids over up to 60 days."""

    segment_ids: tuple[str, ...]
    window: DayWindow


def earliest_reportable_day(today: dt.date) -> dt.date:
    """The oldest account-local day Klaviyo will report on, given the account-local `today`.

    Reports reach back at most MAX_HISTORY_DAYS days and never before REPORTING_DATA_FLOOR.
    """
    return max(REPORTING_DATA_FLOOR, today - dt.timedelta(days=MAX_HISTORY_DAYS))


def check_reporting_window(start: dt.date, end: dt.date, today: dt.date) -> None:
    """Refuse, before any request, a range the reporting API would refuse.

    Args:
        start: first account-local day wanted (inclusive).
        end: last account-local day wanted (inclusive).
        today: the account-local date now.

    Raises:
        ReportWindowError: the range is inverted, starts before 2023-06-01, or starts more than a year back.
    """
    if end < start:
        raise ReportWindowError(f"report range {start} to {end} ends before it starts")
    if start < REPORTING_DATA_FLOOR:
        raise ReportWindowError(
            f"report range starts on {start}, but Klaviyo has no segment report data before "
            f"{REPORTING_DATA_FLOOR}; choose dates from {REPORTING_DATA_FLOOR} on"
        )
    earliest = earliest_reportable_day(today)
    if start < earliest:
        raise ReportWindowError(
            f"report range starts on {start}, more than {MAX_HISTORY_DAYS} days before today ({today}, "
            f"account time); Klaviyo reports reach back one year, so the earliest day allowed now is {earliest}"
        )


def split_days(start: dt.date, end: dt.date, max_days: int = MAX_DAYS_PER_DAILY_SERIES) -> list[DayWindow]:
    """Split an inclusive day range into consecutive windows of at most `max_days` days, no overlap, no gap."""
    if end < start:
        return []
    windows = []
    cursor = start
    while cursor <= end:
        window_end = min(end, cursor + dt.timedelta(days=max_days - 1))
        windows.append(DayWindow(cursor, window_end))
        cursor = window_end + dt.timedelta(days=1)
    return windows


def batch_ids(
    segment_ids: list[str] | tuple[str, ...], size: int = MAX_SEGMENT_IDS_PER_REPORT
) -> list[tuple[str, ...]]:
    """Split segment ids (duplicates dropped, order kept) into batches of at most `size`."""
    unique = list(dict.fromkeys(segment_ids))
    return [tuple(unique[i : i + size]) for i in range(0, len(unique), size)]


def plan_series_requests(
    segment_ids: list[str] | tuple[str, ...], start: dt.date, end: dt.date, today: dt.date
) -> list[SeriesRequest]:
    """The fewest daily-series requests covering every (segment, day) once.

    Args:
        segment_ids: the segments to report on.
        start: first account-local day (inclusive).
        end: last account-local day (inclusive).
        today: the account-local date now, for the one-year rule.

    Returns:
        ceil(len(unique ids) / 100) x ceil(days / 60) requests; empty when there are no segments.

    Raises:
        ReportWindowError: the range would be refused by Klaviyo.
    """
    check_reporting_window(start, end, today)
    return [SeriesRequest(batch, window) for window in split_days(start, end) for batch in batch_ids(segment_ids)]


def minimal_request_count(segment_count: int, days: int) -> int:
    """ceil(segments / 100) x ceil(days / 60): what plan_series_requests returns, as a number."""
    return math.ceil(segment_count / MAX_SEGMENT_IDS_PER_REPORT) * math.ceil(days / MAX_DAYS_PER_DAILY_SERIES)


def custom_timeframe(window: DayWindow, timezone: str) -> dict[str, str]:
    """The `timeframe` body of a custom window: local midnight of the first and last day, with the offset.

    The spec requires RFC 3339 date-times with an offset. Klaviyo ignores the offset and reads the dates in
    the account timezone; we still write the account's true offset for that day so the timestamps are
    honest instants too.
    """
    zone = ZoneInfo(timezone)

    def midnight(day: dt.date) -> str:
        return dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone).isoformat(timespec="seconds")

    return {"start": midnight(window.start), "end": midnight(window.end)}


def series_filter(segment_ids: tuple[str, ...]) -> str:
    """`any(segment_id,["a","b"])`: always explicit, since the meaning of an omitted filter is undocumented."""
    if not segment_ids:
        raise ValueError("a segment report needs at least one segment id")
    if len(segment_ids) > MAX_SEGMENT_IDS_PER_REPORT:
        raise ValueError(f"at most {MAX_SEGMENT_IDS_PER_REPORT} segment ids fit in one report request")
    quoted = ",".join('"' + sid.replace("\\", "\\\\").replace('"', '\\"') + '"' for sid in segment_ids)
    return f"any(segment_id,[{quoted}])"
