"""What the growth report shows, read from the analyst copy: every segment's daily series, definition changes,
anomalies, tags and 30-day movers, packed into compact per-segment arrays for the page. No Dagster here.

Only `marts.segment_growth_daily` is required. The definition history, the anomalies mart and the tags on
`marts.segments` are optional, so a copy built by an older version of the models still gets a report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .tables import MARTS_SCHEMA, RAW_DATASET

GROWTH_DAILY_TABLE = f"{MARTS_SCHEMA}.segment_growth_daily"
# segments smaller than this 30 days ago are left out of the movers table: +400 % of 3 members is noise
MOVERS_MIN_START = 100
MOVERS_PER_SIDE = 10

# each segment on its own latest day, largest first (the report's table and the chart's top segments):
# arg_max_null keeps the 30-day figures NULL when the latest window is incomplete (arg_max would skip back)
SEGMENT_SUMMARY_SQL = f"""
select
    account_id,
    segment_id,
    arg_max(segment_name, date) as segment_name,
    -- the account's short name (accounts file) labels it in the report; the id stays in the key
    arg_max(account_name, date) as account_name,
    min(date) as first_date,
    max(date) as last_date,
    arg_max(total_members, date) as latest_total_members,
    arg_max_null(net_change_30d, date) as net_change_30d,
    arg_max_null(growth_rate_30d, date) as growth_rate_30d,
    arg_max_null(churn_rate_30d, date) as churn_rate_30d,
    arg_max_null(members_at_start_30d, date) as members_at_start_30d
from {GROWTH_DAILY_TABLE}
group by account_id, segment_id
order by latest_total_members desc nulls last, account_id, segment_id
"""

_SERIES_SQL = f"""
select account_id, segment_id, date, total_members, members_added, members_removed, definition_changed
from {GROWTH_DAILY_TABLE}
order by account_id, segment_id, date
"""

# the version that took effect on each changed day, dated in the account's timezone like the daily mart
_VERSIONS_SQL = f"""
select
    history.account_id,
    history.segment_id,
    cast(timezone(coalesce(accounts.timezone, 'UTC'), history.valid_from) as date) as date,
    history.version_number,
    json_array_length(history.definition, '$.condition_groups') as groups,
    len(json_extract(history.definition, '$.condition_groups[*].conditions[*]')) as conditions,
    array_to_string(list_sort(list_distinct(
        json_extract_string(history.definition, '$.condition_groups[*].conditions[*].type')
    )), ', ') as condition_types
from {MARTS_SCHEMA}.segment_definition_history as history
left join {RAW_DATASET}.accounts as accounts on accounts.account_id = history.account_id
where history.version_number > 1
order by 1, 2, 3, 4
"""

_ANOMALIES_SQL = f"""
select account_id, segment_id, date, metric, value, baseline_median, robust_z, reason, is_anomaly
from {MARTS_SCHEMA}.segment_anomalies
order by account_id, segment_id, date, metric
"""

_TAGS_SQL = f"select account_id, segment_id, tags from {MARTS_SCHEMA}.segments"


@dataclass(frozen=True)
class ReportData:
    """Everything the page embeds. `segments` is ordered largest first; each carries its own arrays."""

    segments: list[dict[str, Any]]
    movers: dict[str, list[str]]
    accounts: list[str]
    first_date: dt.date | None
    last_date: dt.date | None
    anomaly_count_30d: int

    def as_json(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "movers": self.movers,
            "accounts": self.accounts,
            "last_date": self.last_date.isoformat() if self.last_date else None,
        }


def _has_table(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _optional(connection: duckdb.DuckDBPyConnection, sql: str, schema: str, table: str) -> list[tuple]:
    if not _has_table(connection, schema, table):
        return []
    try:
        return connection.execute(sql).fetchall()
    except duckdb.Error:
        # an older or newer shape of an optional mart: the report leaves that layer out rather than failing
        return []


def _int(value) -> int | None:
    return None if value is None else int(value)


def _rate(value) -> float | None:
    return None if value is None else round(float(value), 5)


def read_report_data(path: Path) -> ReportData:
    """Read the report's data from a DuckDB file with the marts (normally the analyst copy), read-only."""
    with duckdb.connect(str(path), read_only=True) as connection:
        if not _has_table(connection, MARTS_SCHEMA, "segment_growth_daily"):
            raise LookupError(f"{path} has no {GROWTH_DAILY_TABLE}: build the dbt models (and publish) first")
        segments = connection.execute(SEGMENT_SUMMARY_SQL).fetchall()
        series = connection.execute(_SERIES_SQL).fetchall()
        versions = _optional(connection, _VERSIONS_SQL, MARTS_SCHEMA, "segment_definition_history")
        anomalies = _optional(connection, _ANOMALIES_SQL, MARTS_SCHEMA, "segment_anomalies")
        tags = _optional(connection, _TAGS_SQL, MARTS_SCHEMA, "segments")

    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for account_id, segment_id, name, account_name, first, last, total, net30, growth30, churn30, start30 in segments:
        days = (last - first).days + 1
        by_key[(account_id, segment_id)] = {
            "key": f"{account_id}/{segment_id}",
            "account": account_name or account_id,
            "id": segment_id,
            "name": name or segment_id,
            "tags": [],
            "start": first.isoformat(),
            # dense arrays from `start`, one slot per day; null where a day is missing
            "total": [None] * days,
            "added": [None] * days,
            "removed": [None] * days,
            "latest": _int(total),
            "net30": _int(net30),
            "growth30": _rate(growth30),
            "churn30": _rate(churn30),
            "start30": _int(start30),
            "changes": [],
            "anomalies": [],
        }
    flagged_days: dict[tuple[str, str], set[int]] = {}
    for account_id, segment_id, day, total, added, removed, changed in series:
        segment = by_key[(account_id, segment_id)]
        index = (day - dt.date.fromisoformat(segment["start"])).days
        segment["total"][index], segment["added"][index], segment["removed"][index] = total, added, removed
        if changed:
            flagged_days.setdefault((account_id, segment_id), set()).add(index)
    for account_id, segment_id, day, version, groups, conditions, types in versions:
        segment = by_key.get((account_id, segment_id))
        if segment is None:
            continue
        index = (day - dt.date.fromisoformat(segment["start"])).days
        summary = f"Definition v{version}: {conditions} condition(s) in {groups} group(s): {types or 'none'}"
        segment["changes"].append([index, summary])
        flagged_days.get((account_id, segment_id), set()).discard(index)
    # changed days the history could not describe (an older history mart) are still marked
    for key, indexes in flagged_days.items():
        for index in sorted(indexes):
            by_key[key]["changes"].append([index, "The definition changed"])
    last_date = max((row[4] for row in segments), default=None)
    recent = 0
    for account_id, segment_id, day, metric, value, median, z, reason, is_anomaly in anomalies:
        segment = by_key.get((account_id, segment_id))
        if segment is None:
            continue
        index = (day - dt.date.fromisoformat(segment["start"])).days
        segment["anomalies"].append([index, metric, int(value), round(float(median), 1), round(float(z), 1), reason])
        if is_anomaly and last_date is not None and day > last_date - dt.timedelta(days=30):
            recent += 1
    for account_id, segment_id, names in tags:
        if (account_id, segment_id) in by_key and names:
            by_key[(account_id, segment_id)]["tags"] = list(names)

    ordered = list(by_key.values())
    eligible = [s for s in ordered if s["growth30"] is not None and (s["start30"] or 0) >= MOVERS_MIN_START]
    growing = sorted((s for s in eligible if s["growth30"] > 0), key=lambda s: (-s["growth30"], s["key"]))
    shrinking = sorted((s for s in eligible if s["growth30"] < 0), key=lambda s: (s["growth30"], s["key"]))
    movers = {
        "growing": [s["key"] for s in growing[:MOVERS_PER_SIDE]],
        "shrinking": [s["key"] for s in shrinking[:MOVERS_PER_SIDE]],
    }
    first_date = min((row[3] for row in segments), default=None)
    accounts = sorted({s["account"] for s in ordered})
    return ReportData(ordered, movers, accounts, first_date, last_date, recent)
