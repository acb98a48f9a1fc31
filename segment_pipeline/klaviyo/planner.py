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


# -- what is still worth asking for --------------------------------------------------------------------------
#
# Klaviyo may revise a day's numbers for a few days after it ends (the late-data lookback). A (segment, day)
# cell fetched when the day was already older than the lookback is final: asking again returns the same
# numbers. Anything else (never fetched, or fetched while still recent) is worth a request. This is the one
# place that rule is written; ingestion plans with it and nothing else decides it.

Days = tuple[DayWindow, ...]  # sorted, disjoint, non-adjacent inclusive day ranges


def last_final_day(fetched_on: dt.date, lookback_days: int) -> dt.date:
    """The newest day whose numbers are final when fetched on `fetched_on` (account-local days).

    A day is final once it was more than `lookback_days` days old when it was fetched: the daily run of
    day t re-pulls the `lookback_days` days before yesterday, so each day is fetched a last time at age
    lookback_days + 1 and never again.
    """
    return fetched_on - dt.timedelta(days=lookback_days + 1)


def is_final(day: dt.date, fetched_on: dt.date | None, lookback_days: int) -> bool:
    """Whether a cell of `day` fetched on `fetched_on` (None: unknown) needs no new request."""
    return fetched_on is not None and day <= last_final_day(fetched_on, lookback_days)


def _normalize(windows) -> Days:
    """Sort and merge overlapping or adjacent windows."""
    merged: list[DayWindow] = []
    for window in sorted(windows):
        if merged and window.start <= merged[-1].end + dt.timedelta(days=1):
            if window.end > merged[-1].end:
                merged[-1] = DayWindow(merged[-1].start, window.end)
        else:
            merged.append(window)
    return tuple(merged)


def _subtract(window: DayWindow, removed: Days) -> Days:
    """The days of `window` outside `removed`."""
    left: list[DayWindow] = []
    cursor = window.start
    for gap in removed:
        if gap.end < cursor or gap.start > window.end:
            continue
        if gap.start > cursor:
            left.append(DayWindow(cursor, gap.start - dt.timedelta(days=1)))
        cursor = max(cursor, gap.end + dt.timedelta(days=1))
    if cursor <= window.end:
        left.append(DayWindow(cursor, window.end))
    return tuple(left)


def days_in(days: Days, window: DayWindow) -> Days:
    """The part of `days` inside `window`."""
    return _intersect(days, window)


def _intersect(days: Days, window: DayWindow) -> Days:
    return tuple(
        DayWindow(max(d.start, window.start), min(d.end, window.end))
        for d in days
        if d.end >= window.start and d.start <= window.end
    )


def day_count(days: Days) -> int:
    """How many days a set of day ranges holds."""
    return sum(d.days for d in days)


def days_to_fetch(
    segment_ids: list[str] | tuple[str, ...],
    start: dt.date,
    end: dt.date,
    stored: list[tuple[str, dt.date | None, dt.date, dt.date]],
    lookback_days: int,
    today: dt.date,
    *,
    refetch: bool = False,
) -> dict[str, Days]:
    """The days each segment still needs from Klaviyo for a run of `start`..`end`.

    Args:
        segment_ids: the live segments.
        start, end: the run's days (inclusive, account-local).
        stored: what the warehouse holds, as (segment_id, fetched_on, first_day, last_day) runs of days.
        lookback_days: the late-data lookback (SERIES_LOOKBACK_DAYS).
        today: the account-local date now.
        refetch: ask for every day of the range again, final or not.

    Returns:
        segment id -> days to request: every day of the range that is missing or not final (all of them
        with `refetch`), plus the stored days of the `lookback_days` before the range that are not final yet
        (so the daily run keeps refreshing the last few days, in the same request). Segments that need
        nothing are left out.
    """
    final: dict[str, list[DayWindow]] = {}
    not_final: dict[str, list[DayWindow]] = {}
    for segment_id, fetched_on, first, last in stored:
        through = last_final_day(fetched_on, lookback_days) if fetched_on is not None else None
        if through is not None and first <= through:
            final.setdefault(segment_id, []).append(DayWindow(first, min(last, through)))
        recent_from = first if through is None else max(first, through + dt.timedelta(days=1))
        if recent_from <= last:
            not_final.setdefault(segment_id, []).append(DayWindow(recent_from, last))

    wanted = DayWindow(start, end)
    before_start = max(earliest_reportable_day(today), start - dt.timedelta(days=lookback_days))
    before = DayWindow(before_start, start - dt.timedelta(days=1)) if before_start < start else None
    needed: dict[str, Days] = {}
    interned: dict[Days, Days] = {}  # 10,000 segments usually share a handful of shapes: keep one copy each
    for segment_id in dict.fromkeys(segment_ids):
        days = (wanted,) if refetch else _subtract(wanted, _normalize(final.get(segment_id, [])))
        if before is not None:
            days = _normalize([*days, *_intersect(_normalize(not_final.get(segment_id, [])), before)])
        if days:
            needed[segment_id] = interned.setdefault(days, days)
    return needed


def cover_days(days: Days, max_days: int = MAX_DAYS_PER_DAILY_SERIES) -> list[DayWindow]:
    """The fewest windows of at most `max_days` days covering `days`.

    Greedy from the oldest uncovered day, each window trimmed to the last needed day it reaches: for points
    on a line and windows of one length, that is optimal.
    """
    windows: list[DayWindow] = []
    pending = list(days)
    while pending:
        start = pending[0].start
        reached = _intersect(tuple(pending), DayWindow(start, start + dt.timedelta(days=max_days - 1)))
        end = reached[-1].end
        windows.append(DayWindow(start, end))
        pending = [DayWindow(max(d.start, end + dt.timedelta(days=1)), d.end) for d in pending if d.end > end]
    return windows


def plan_needed_requests(needed: dict[str, Days]) -> list[SeriesRequest]:
    """The requests for exactly the needed cells, in few requests, oldest days first.

    Segments needing the same days are grouped; each group's days are covered by the fewest windows of at
    most 60 days and its ids batched by 100. The requests are ordered by window (then batch), so a run
    cut short by the budget has finished whole days rather than a few segments of every day.
    """
    groups: dict[Days, list[str]] = {}
    for segment_id, days in needed.items():
        groups.setdefault(days, []).append(segment_id)
    requests = [
        SeriesRequest(batch, window)
        for days, ids in groups.items()
        for window in cover_days(days)
        for batch in batch_ids(sorted(ids))
    ]
    return sorted(requests, key=lambda r: (r.window.start, r.window.end))


def cells_in(requests: list[SeriesRequest], needed: dict[str, Days]) -> int:
    """How many needed (segment, day) cells the requests cover."""
    return sum(day_count(_intersect(needed[sid], r.window)) for r in requests for sid in r.segment_ids if sid in needed)


def days_left(requests: list[SeriesRequest], needed: dict[str, Days]) -> set[dt.date]:
    """The days with needed cells that these (unsent) requests would have fetched."""
    days: set[dt.date] = set()
    for request in requests:
        parts = [part for sid in request.segment_ids for part in _intersect(needed.get(sid, ()), request.window)]
        for window in _normalize(parts):
            days.update(window.dates())
    return days
