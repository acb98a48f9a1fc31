"""POST /api/segment-series-reports and /api/segment-values-reports: request validation and report bodies.

Both reports read the same ground truth as `SimulatedAccount.series`, so a client's loaded rows can be
compared with the truth exactly. Segments named in the filter that don't exist (or were deleted) are left
out of `results`, as Klaviyo does for ids it can't report on, while `date_times` still lists every day. A
client tells a deleted segment from an incomplete answer by asking `GET /api/segments/{id}`: 404 for a deleted
one. To delete one between a listing and a report: `SimulatedAccount.delete`, the fault
`FaultPlan.add(delete_segment_ids=...)`, or `POST /__simulator/segments/{id}/delete`.

They answer `SimulatedAccount.reported_rows`: the truth once it has settled, before that a created segment's
zeros until its backfill and the open days of `revision_days` (see `settling.py`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from .account import SimulatedAccount
from .error_documents import invalid
from .filters import FilterSyntaxError, parse_filter
from .query import Query, check_known_parameters, csv_values
from .rules import (
    MAX_DAYS_PER_DAILY_SERIES,
    MAX_SEGMENT_IDS_PER_REPORT,
    SERIES_STATISTICS,
)
from .timeframes import DayWindow, check_window, parse_timeframe

SERIES_TYPE = "segment-series-report"
VALUES_TYPE = "segment-values-report"
INTERVALS = ("daily", "hourly", "monthly", "weekly")
SIMULATED_INTERVALS = ("daily",)
FILTER_POINTER = "/data/attributes/filter"


@dataclass(frozen=True)
class ReportRequest:
    """A validated report request.

    Attributes:
        statistics: Requested statistics, in request order, without duplicates.
        window: Requested days (both ends included).
        segment_ids: Ids from the filter in request order, or `None` when no filter was given.
    """

    statistics: tuple[str, ...]
    window: DayWindow
    segment_ids: tuple[str, ...] | None


def _segment_ids(text: Any) -> tuple[str, ...] | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise invalid('filter must be a string such as any(segment_id,["abc123"]).', pointer=FILTER_POINTER)
    try:
        conditions = parse_filter(text)
    except FilterSyntaxError as exc:
        raise invalid(f"Invalid filter: {exc}.", pointer=FILTER_POINTER) from None
    if len(conditions) != 1:
        raise invalid("Only one filter can be used per attribute.", pointer=FILTER_POINTER)
    condition = conditions[0]
    if condition.field != "segment_id":
        raise invalid(f"'{condition.field}' is not a valid filter field. Allowed: segment_id.", pointer=FILTER_POINTER)
    if condition.operator == "equals":
        if not isinstance(condition.value, str):
            raise invalid("equals(segment_id,...) takes one quoted segment id.", pointer=FILTER_POINTER)
        return (condition.value,)
    if condition.operator == "any":
        values = condition.value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise invalid("any(segment_id,[...]) takes a non-empty list of quoted segment ids.", pointer=FILTER_POINTER)
        if len(values) > MAX_SEGMENT_IDS_PER_REPORT:
            raise invalid(
                f"Max of {MAX_SEGMENT_IDS_PER_REPORT} segment ids per any filter; got {len(values)}.",
                pointer=FILTER_POINTER,
            )
        return tuple(dict.fromkeys(values))
    raise invalid(f"Operator '{condition.operator}' is not allowed. Allowed: equals, any.", pointer=FILTER_POINTER)


def parse_report_request(body: Any, *, report_type: str, today: dt.date) -> ReportRequest:
    """Validate a report request body.

    Args:
        body: The parsed JSON body.
        report_type: `SERIES_TYPE` or `VALUES_TYPE`.
        today: Today in the account timezone.

    Returns:
        The validated request.

    Raises:
        ApiError: 400 for any violation, with a pointer to the offending member.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise invalid("The request body must be a JSON:API document with a data object.", pointer="/data")
    data = body["data"]
    if data.get("type") != report_type:
        raise invalid(f"data.type must be '{report_type}'.", pointer="/data/type")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise invalid("data.attributes must be an object.", pointer="/data/attributes")
    allowed = {"statistics", "timeframe", "filter"} | ({"interval"} if report_type == SERIES_TYPE else set())
    for name in attributes:
        if name not in allowed:
            raise invalid(f"'{name}' is not a valid attribute for {report_type}.", pointer=f"/data/attributes/{name}")

    statistics = attributes.get("statistics")
    if not isinstance(statistics, list) or not statistics:
        raise invalid(
            f"statistics is required: a non-empty list of {', '.join(SERIES_STATISTICS)}.",
            pointer="/data/attributes/statistics",
        )
    for statistic in statistics:
        if statistic not in SERIES_STATISTICS:
            raise invalid(
                f"'{statistic}' is not a valid statistic. Allowed: {', '.join(SERIES_STATISTICS)}.",
                pointer="/data/attributes/statistics",
            )

    if report_type == SERIES_TYPE:
        interval = attributes.get("interval")
        if interval is None:
            raise invalid("interval is required.", pointer="/data/attributes/interval")
        if interval not in INTERVALS:
            raise invalid(
                f"'{interval}' is not a valid interval. Allowed: {', '.join(INTERVALS)}.",
                pointer="/data/attributes/interval",
            )
        if interval not in SIMULATED_INTERVALS:
            raise invalid(
                f"The Klaviyo simulator supports only the daily interval; '{interval}' is not simulated.",
                pointer="/data/attributes/interval",
            )

    if "timeframe" not in attributes:
        raise invalid("timeframe is required.", pointer="/data/attributes/timeframe")
    window = parse_timeframe(attributes["timeframe"], today)
    segment_ids = _segment_ids(attributes.get("filter"))
    check_window(window, today, max_days=MAX_DAYS_PER_DAILY_SERIES if report_type == SERIES_TYPE else None)
    return ReportRequest(tuple(dict.fromkeys(statistics)), window, segment_ids)


def _report_fields(query: Query, report_type: str) -> list[str] | None:
    name = f"fields[{report_type}]"
    allowed = ("date_times", "id", "results") if report_type == SERIES_TYPE else ("id", "results")
    check_known_parameters(query, (name,))
    if name not in query:
        return None
    values = csv_values(query[name])
    for value in values:
        if value not in allowed:
            raise invalid(f"'{value}' is not a valid value for {name}. Allowed: {', '.join(allowed)}.", parameter=name)
    return values


def _reported_ids(account: SimulatedAccount, request: ReportRequest) -> list[str]:
    if request.segment_ids is None:
        return [s.id for s in account.segments]
    return [segment_id for segment_id in request.segment_ids if account.has_segment(segment_id)]


def _document(report_type: str, attributes: dict[str, Any], fields: list[str] | None, self_url: str) -> dict[str, Any]:
    data: dict[str, Any] = {"type": report_type, "id": str(uuid.uuid4()), "attributes": attributes}
    if fields is not None:
        data["attributes"] = {k: v for k, v in attributes.items() if k in fields}
        if "id" not in fields:
            del data["id"]
    return {"data": data, "links": {"self": self_url}}


def series_report(account: SimulatedAccount, body: Any, query: Query, self_url: str) -> dict[str, Any]:
    """Answer POST /api/segment-series-reports.

    Args:
        account: The simulated account.
        body: The parsed request body.
        query: The decoded query parameters.
        self_url: URL for `links.self`.

    Returns:
        The report document: `date_times` at each day's local midnight (with that day's UTC offset) and one
        result per reported segment, each statistic an array aligned with `date_times`.

    Raises:
        ApiError: 400 for an invalid request.
    """
    fields = _report_fields(query, SERIES_TYPE)
    today = account.today()
    request = parse_report_request(body, report_type=SERIES_TYPE, today=today)
    first, last = request.window.start, min(request.window.end, today)
    days = [first + dt.timedelta(days=i) for i in range(max(0, (last - first).days + 1))]
    results = []
    for segment_id in _reported_ids(account, request):
        rows = account.reported_rows(segment_id, first, last) if days else []
        columns = {
            "total_members": [total for total, _, _ in rows],
            "members_added": [added for _, added, _ in rows],
            "members_removed": [removed for _, _, removed in rows],
            "net_members_changed": [added - removed for _, added, removed in rows],
        }
        results.append(
            {"groupings": {"segment_id": segment_id}, "statistics": {s: columns[s] for s in request.statistics}}
        )
    attributes = {
        "results": results,
        "date_times": [account.local_midnight(day).isoformat() for day in days],
    }
    return _document(SERIES_TYPE, attributes, fields, self_url)


def values_report(account: SimulatedAccount, body: Any, query: Query, self_url: str) -> dict[str, Any]:
    """Answer POST /api/segment-values-reports.

    Args:
        account: The simulated account.
        body: The parsed request body.
        query: The decoded query parameters.
        self_url: URL for `links.self`.

    Returns:
        The report document: per segment, `total_members` on the last reported day and the flows summed over
        the window (days after today are not counted).

    Raises:
        ApiError: 400 for an invalid request.
    """
    fields = _report_fields(query, VALUES_TYPE)
    today = account.today()
    request = parse_report_request(body, report_type=VALUES_TYPE, today=today)
    first, last = request.window.start, min(request.window.end, today)
    results = []
    for segment_id in _reported_ids(account, request):
        rows = account.reported_rows(segment_id, first, last) if last >= first else []
        added = sum(row[1] for row in rows)
        removed = sum(row[2] for row in rows)
        values = {
            "total_members": rows[-1][0] if rows else 0,
            "members_added": added,
            "members_removed": removed,
            "net_members_changed": added - removed,
        }
        results.append(
            {"groupings": {"segment_id": segment_id}, "statistics": {s: values[s] for s in request.statistics}}
        )
    return _document(VALUES_TYPE, {"results": results}, fields, self_url)
