"""Turns a segment-series report response into rows, one per (segment, account-local day).

The rows are keyed by the calendar date Klaviyo writes in `date_times` (the account's local day). We never
shift it through UTC: "2026-03-01T00:00:00-05:00" is 2026-03-01, even though that instant is 05:00 UTC.
A response we cannot trust (arrays whose length differs from `date_times`, non-integer counts, days outside
the requested window, days of the window or requested segments it lacks) is rejected whole: nothing of it is
kept. Days after the account's today are not expected: Klaviyo cannot report them yet.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from .errors import IncompleteSeriesResponse, KlaviyoResponseError
from .limits import SERIES_STATISTICS
from .planner import DayWindow

SERIES_ROW_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        *[pa.field(name, pa.int64()) for name in SERIES_STATISTICS],
    ]
)


def local_date(timestamp: str, timezone: str) -> dt.date:
    """The account-local calendar day a `date_times` entry stands for.

    A timestamp at midnight in its own offset names its day directly (that is how Klaviyo writes buckets).
    Anything else is an instant: convert it to the account timezone and take that date, never UTC's.
    """
    try:
        moment = dt.datetime.fromisoformat(timestamp)
    except (TypeError, ValueError) as exc:
        raise KlaviyoResponseError(f"date_times holds {timestamp!r}, which is not an ISO 8601 date-time") from exc
    if moment.time() == dt.time(0, 0) or moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(ZoneInfo(timezone)).date()


def _counts(values: Any, expected: int, segment_id: str, statistic: str) -> list[int]:
    if not isinstance(values, list):
        raise KlaviyoResponseError(f"segment {segment_id}: {statistic} is not an array")
    if len(values) != expected:
        raise KlaviyoResponseError(
            f"segment {segment_id}: {statistic} has {len(values)} values but date_times has {expected}; "
            "the response is misaligned and none of it was kept"
        )
    counts = []
    for value in values:
        # bool is an int subclass in Python; a count is never true/false. Floats like 12.0 are tolerated.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise KlaviyoResponseError(f"segment {segment_id}: {statistic} holds {value!r}, not a whole number")
        counts.append(int(value))
    return counts


def series_rows(
    response: dict[str, Any],
    *,
    account_id: str,
    timezone: str,
    requested_ids: tuple[str, ...],
    window: DayWindow,
    today: dt.date | None = None,
) -> pa.Table:
    """Unpivot one series response into an Arrow table of SERIES_ROW_SCHEMA.

    Args:
        response: the decoded JSON body of POST /api/segment-series-reports.
        account_id: the account the rows belong to.
        timezone: the account's IANA timezone, for timestamps that are not local midnights.
        requested_ids: the segment ids the request asked for; results for others, and any of them missing
            from the results, are an error.
        window: the requested inclusive day window; days outside it, and days of it up to `today` missing
            from `date_times`, are an error.
        today: the account-local today (default: now in `timezone`); later days of the window are not expected.

    Raises:
        IncompleteSeriesResponse: days of the window or requested segments are missing (they are named).
        KlaviyoResponseError: the response is malformed in any other way; no rows are returned.
    """
    try:
        attributes = response["data"]["attributes"]
        date_times = attributes["date_times"]
        results = attributes["results"]
    except (KeyError, TypeError) as exc:
        raise KlaviyoResponseError("segment series response lacks data.attributes.date_times or .results") from exc
    if not isinstance(date_times, list) or not isinstance(results, list):
        raise KlaviyoResponseError("segment series response: date_times and results must be arrays")

    dates = [local_date(stamp, timezone) for stamp in date_times]
    if len(set(dates)) != len(dates):
        raise KlaviyoResponseError("segment series response repeats a day in date_times")
    outside = [d for d in dates if d < window.start or d > window.end]
    if outside:
        raise KlaviyoResponseError(
            f"segment series response has days outside the requested {window.start}..{window.end}: "
            f"{outside[0]} and {len(outside) - 1} more"
        )

    today = dt.datetime.now(ZoneInfo(timezone)).date() if today is None else today
    present_days = set(dates)
    missing_days = tuple(d for d in window.dates() if d <= today and d not in present_days)

    wanted = set(requested_ids)
    columns: dict[str, list] = {name: [] for name in SERIES_ROW_SCHEMA.names}
    seen: set[str] = set()
    for result in results:
        try:
            segment_id = result["groupings"]["segment_id"]
            statistics = result["statistics"]
        except (KeyError, TypeError) as exc:
            raise KlaviyoResponseError("a series result lacks groupings.segment_id or statistics") from exc
        if segment_id not in wanted:
            raise KlaviyoResponseError(f"series response has segment {segment_id!r}, which was not requested")
        if segment_id in seen:
            raise KlaviyoResponseError(f"series response lists segment {segment_id!r} twice")
        seen.add(segment_id)
        missing = [name for name in SERIES_STATISTICS if name not in statistics]
        if missing:
            raise KlaviyoResponseError(f"segment {segment_id}: the response lacks {', '.join(missing)}")
        per_stat = {name: _counts(statistics[name], len(dates), segment_id, name) for name in SERIES_STATISTICS}
        columns["account_id"].extend([account_id] * len(dates))
        columns["segment_id"].extend([segment_id] * len(dates))
        columns["date"].extend(dates)
        for name in SERIES_STATISTICS:
            columns[name].extend(per_stat[name])
    missing_ids = tuple(sid for sid in dict.fromkeys(requested_ids) if sid not in seen)
    if missing_days or missing_ids:
        raise IncompleteSeriesResponse(
            missing_days=missing_days, missing_segment_ids=missing_ids, window=f"{window.start}..{window.end}"
        )
    return pa.table(columns, schema=SERIES_ROW_SCHEMA)
