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
# A (segment, day) cell is final when asking again would return the same numbers. Two things keep Klaviyo's
# numbers moving after a first answer:
# - Klaviyo revises a day's buckets for a few days after it ends (the late-data lookback, about 5 days).
# - A new segment's past days answer zeros until Klaviyo's asynchronous growth backfill is done, hours and up
#   to about 48 h after its creation (its `is_processing` turns false before that, when its membership is
#   done). A segment whose definition is recomputed (`is_processing` again) may move the same way.
# So a cell is final only when it was fetched once its day was older than the lookback AND the segment had
# settled: NEW_SEGMENT_SETTLE after its creation and after it was last seen processing. A stored history that
# is all zeros before the creation day while the segment has members is evidence the backfill had not
# happened: such a segment settles only ZERO_HISTORY_WAIT after its creation (a backfill that never comes
# must not cost requests forever). Cells fetched before their segment settled are asked again by the first
# run once it has settled, whichever days they are. This is the one place those rules are written; ingestion
# plans with them and nothing else decides them.

Days = tuple[DayWindow, ...]  # sorted, disjoint, non-adjacent inclusive day ranges

# Klaviyo's growth backfill of a new segment takes up to about 48 h (practitioners' reports).
NEW_SEGMENT_SETTLE = dt.timedelta(hours=48)
# How long an all-zero past of a segment with members is taken for a backfill still under way.
ZERO_HISTORY_WAIT = dt.timedelta(days=7)


def last_final_day(fetched_on: dt.date, lookback_days: int) -> dt.date:
    """The newest day whose numbers are final when fetched on `fetched_on` (account-local days).

    A day is final once it was more than `lookback_days` days old when it was fetched: the daily run of
    day t re-pulls the `lookback_days` days before yesterday, so each day is fetched a last time at age
    lookback_days + 1 and never again.
    """
    return fetched_on - dt.timedelta(days=lookback_days + 1)


def is_final(day: dt.date, fetched_on: dt.date | None, lookback_days: int, settled_on: dt.date | None = None) -> bool:
    """Whether a cell of `day` fetched on `fetched_on` (None: unknown) needs no new request.

    `settled_on` is the first day on which the segment's numbers had settled (`Settling.settled_on`); a cell
    fetched before it is not final whatever its age. None: nothing says the segment was ever unsettled.
    """
    if fetched_on is None or day > last_final_day(fetched_on, lookback_days):
        return False
    return settled_on is None or fetched_on >= settled_on


@dataclass(frozen=True)
class SegmentFacts:
    """What the warehouse holds about one segment that decides when its numbers settle.

    Attributes:
        segment_id: the segment.
        created: Klaviyo's `created`, tz-aware (None: Klaviyo sent none).
        listed_at: when the segments step last listed it; a `created` later than this is taken as this.
        processing_seen_at: the last listing that showed it `is_processing` (None: never seen processing).
        first_stored_day: the oldest day of its stored series (None: nothing stored).
        first_nonzero_day: the oldest stored day with any statistic other than 0 (None: none).
        members_now: total_members on its newest stored day: whether Klaviyo reports members.
        first_fetched_on: the oldest fetch day among its stored days (None: nothing with a fetch day).
    """

    segment_id: str
    created: dt.datetime | None
    listed_at: dt.datetime | None = None
    processing_seen_at: dt.datetime | None = None
    first_stored_day: dt.date | None = None
    first_nonzero_day: dt.date | None = None
    members_now: int | None = None
    first_fetched_on: dt.date | None = None


@dataclass(frozen=True)
class Settling:
    """When a segment's numbers settle, in account-local days.

    Attributes:
        settled_on: cells of the segment fetched before this day are not final.
        refetch_from: from this day on, runs ask again for those cells wherever they lie (the day the segment
            is past its settle period); before it they are asked for only within a run's own days.
    """

    settled_on: dt.date
    refetch_from: dt.date


def _day_after(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    # the first account-local day that starts after `moment`: every fetch on it comes later
    return moment.astimezone(zone).date() + dt.timedelta(days=1)


def zero_history_before_creation(facts: SegmentFacts, created_day: dt.date) -> bool:
    """Whether the stored series is all zeros before the creation day while the segment has members now."""
    return (
        (facts.members_now or 0) > 0
        and facts.first_stored_day is not None
        and facts.first_stored_day < created_day
        and (facts.first_nonzero_day is None or facts.first_nonzero_day >= created_day)
    )


def settling_of(facts: SegmentFacts, timezone: str) -> Settling | None:
    """When the segment's numbers settle; None when nothing is known to date it (no creation, never processing).

    Settled NEW_SEGMENT_SETTLE after the later of its creation and the last listing that showed it processing;
    with an all-zero stored past where it has members now, not before ZERO_HISTORY_WAIT after its creation.
    """
    zone = ZoneInfo(timezone)
    created = facts.created
    if created is not None and facts.listed_at is not None:
        created = min(created, facts.listed_at)  # a segment exists by the time it is listed
    seen = facts.processing_seen_at
    if seen is not None and facts.listed_at is not None:
        seen = min(seen, facts.listed_at)
    moments = [moment for moment in (created, seen) if moment is not None]
    if not moments:
        return None
    refetch_from = _day_after(max(moments) + NEW_SEGMENT_SETTLE, zone)
    settled_on = refetch_from
    if created is not None and zero_history_before_creation(facts, created.astimezone(zone).date()):
        settled_on = max(settled_on, _day_after(created + ZERO_HISTORY_WAIT, zone))
    return Settling(settled_on=settled_on, refetch_from=refetch_from)


def settled_by(since: dt.date) -> dt.datetime:
    """A moment such that a segment created and last seen processing before it had settled by `since`, in any
    timezone: its cells from `since` on are final by age alone, so what it stored need not be read."""
    longest = max(NEW_SEGMENT_SETTLE, ZERO_HISTORY_WAIT)
    return dt.datetime.combine(since, dt.time(), dt.UTC) - longest - dt.timedelta(days=2)


def settling_by_segment(facts: list[SegmentFacts], timezone: str) -> dict[str, Settling]:
    """`settling_of` for each segment that has one."""
    found = ((f.segment_id, settling_of(f, timezone)) for f in facts)
    return {segment_id: settle for segment_id, settle in found if settle is not None}


def to_repair(facts: list[SegmentFacts], settling: dict[str, Settling], today: dt.date) -> list[str]:
    """Segments with stored cells fetched before they settled, due to be asked again today (sorted)."""
    return sorted(
        f.segment_id
        for f in facts
        if f.first_fetched_on is not None
        and (settle := settling.get(f.segment_id)) is not None
        and f.first_fetched_on < settle.settled_on
        and settle.refetch_from <= today
    )


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
    settling: dict[str, Settling] | None = None,
) -> dict[str, Days]:
    """The days each segment still needs from Klaviyo for a run of `start`..`end`.

    Args:
        segment_ids: the live segments.
        start, end: the run's days (inclusive, account-local).
        stored: what the warehouse holds, as (segment_id, fetched_on, first_day, last_day) runs of days: the
            run's days and the `lookback_days` before them, and every stored day of the segments due a repair
            (`to_repair`).
        lookback_days: the late-data lookback (SERIES_LOOKBACK_DAYS).
        today: the account-local date now.
        refetch: ask for every day of the range again, final or not.
        settling: segment id -> when its numbers settle (`settling_of`); a segment left out is settled.

    Returns:
        segment id -> days to request: every day of the range that is missing or not final (all of them
        with `refetch`), plus the stored days of the `lookback_days` before the range that are not final yet
        (so the daily run keeps refreshing the last few days, in the same request), plus, for a segment past
        its settle period, every stored day it has (within the year Klaviyo reports) that was fetched before
        it settled. Segments that need nothing are left out.
    """
    settling = settling or {}
    final: dict[str, list[DayWindow]] = {}
    not_final: dict[str, list[DayWindow]] = {}
    unsettled: dict[str, list[DayWindow]] = {}
    for segment_id, fetched_on, first, last in stored:
        settle = settling.get(segment_id)
        settled = fetched_on is not None and (settle is None or fetched_on >= settle.settled_on)
        if fetched_on is not None and not settled:
            unsettled.setdefault(segment_id, []).append(DayWindow(first, last))
        through = last_final_day(fetched_on, lookback_days) if settled else None
        if through is not None and first <= through:
            final.setdefault(segment_id, []).append(DayWindow(first, min(last, through)))
        recent_from = first if through is None else max(first, through + dt.timedelta(days=1))
        if recent_from <= last:
            not_final.setdefault(segment_id, []).append(DayWindow(recent_from, last))

    wanted = DayWindow(start, end)
    earliest = earliest_reportable_day(today)
    before_start = max(earliest, start - dt.timedelta(days=lookback_days))
    before = DayWindow(before_start, start - dt.timedelta(days=1)) if before_start < start else None
    reportable = DayWindow(earliest, today)
    needed: dict[str, Days] = {}
    interned: dict[Days, Days] = {}  # 10,000 segments usually share a handful of shapes: keep one copy each
    for segment_id in dict.fromkeys(segment_ids):
        days = (wanted,) if refetch else _subtract(wanted, _normalize(final.get(segment_id, [])))
        if before is not None:
            days = _normalize([*days, *_intersect(_normalize(not_final.get(segment_id, [])), before)])
        settle = settling.get(segment_id)
        if settle is not None and settle.refetch_from <= today and segment_id in unsettled:
            days = _normalize([*days, *_intersect(_normalize(unsettled[segment_id]), reportable)])
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
