"""What the growth report shows, read from the analyst copy: every segment's daily series, definition changes,
anomalies, tags, the 30-day movers and the recent anomalies, packed into compact per-segment arrays for the
page. No Dagster here.

Every query result is read by column name (`_records`), never by position: a column added to a query or a
mart cannot shift what the page says.

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
# "recent" in the header, the anomaly table and the picker's ⚠: the 30 days ending on the report's newest day
RECENT_DAYS = 30
# the anomaly table lists the newest ones; the header counts them all (marts.segment_anomalies has every one)
ANOMALY_ROWS = 20

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
    json_array_length(history.definition, '$.condition_groups') as condition_groups,
    len(json_extract(history.definition, '$.condition_groups[*].conditions[*]')) as conditions,
    array_to_string(list_sort(list_distinct(
        json_extract_string(history.definition, '$.condition_groups[*].conditions[*].type')
    )), ', ') as condition_types
from {MARTS_SCHEMA}.segment_definition_history as history
left join {RAW_DATASET}.accounts as accounts on accounts.account_id = history.account_id
where history.version_number > 1
order by account_id, segment_id, date, version_number
"""

_ANOMALIES_SQL = f"""
select account_id, segment_id, date, metric, value, baseline_median, robust_z, reason, is_anomaly
from {MARTS_SCHEMA}.segment_anomalies
order by account_id, segment_id, date, metric
"""

# the recent anomalies (not the definition edits, which are kept with is_anomaly false): how many, and the
# newest ones for the table, the strongest first within a day
_RECENT_ANOMALIES_SQL = f"""
select
    account_id, segment_id, date, reason, value, baseline_median, robust_z,
    count(*) over () as recent_count
from {MARTS_SCHEMA}.segment_anomalies
where is_anomaly and date > ?::date - {RECENT_DAYS}
order by date desc, abs(robust_z) desc, account_id, segment_id, metric
limit {ANOMALY_ROWS}
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
    # the newest anomalies of the last RECENT_DAYS: [segment key, day, reason, value, usual, robust z]
    recent_anomalies: list[list[Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "movers": self.movers,
            "accounts": self.accounts,
            "last_date": self.last_date.isoformat() if self.last_date else None,
            "recent_anomalies": self.recent_anomalies,
            "anomaly_count_30d": self.anomaly_count_30d,
        }


def _records(connection: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    """A query's rows as dicts keyed by column name."""
    cursor = connection.execute(sql, params or [])
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_table(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _optional(
    connection: duckdb.DuckDBPyConnection, sql: str, table: str, params: list | None = None
) -> list[dict[str, Any]]:
    if not _has_table(connection, MARTS_SCHEMA, table):
        return []
    try:
        return _records(connection, sql, params)
    except duckdb.Error:
        # an older or newer shape of an optional mart: the report leaves that layer out rather than failing
        return []


def _int(value) -> int | None:
    return None if value is None else int(value)


def _rate(value) -> float | None:
    # unrounded: the page rounds once, as it displays (rounding here too could move the last shown digit)
    return None if value is None else float(value)


def _key(row: dict[str, Any]) -> str:
    return f"{row['account_id']}/{row['segment_id']}"


def read_report_data(path: Path) -> ReportData:
    """Read the report's data from a DuckDB file with the marts (normally the analyst copy), read-only."""
    with duckdb.connect(str(path), read_only=True) as connection:
        if not _has_table(connection, MARTS_SCHEMA, "segment_growth_daily"):
            raise LookupError(f"{path} has no {GROWTH_DAILY_TABLE}: build the dbt models (and publish) first")
        summary = _records(connection, SEGMENT_SUMMARY_SQL)
        series = _records(connection, _SERIES_SQL)
        versions = _optional(connection, _VERSIONS_SQL, "segment_definition_history")
        anomalies = _optional(connection, _ANOMALIES_SQL, "segment_anomalies")
        last_date = max((row["last_date"] for row in summary), default=None)
        recent = _optional(connection, _RECENT_ANOMALIES_SQL, "segment_anomalies", [last_date]) if last_date else []
        tags = _optional(connection, _TAGS_SQL, "segments")

    by_key: dict[str, dict[str, Any]] = {}
    for row in summary:
        days = (row["last_date"] - row["first_date"]).days + 1
        by_key[_key(row)] = {
            "key": _key(row),
            "account": row["account_name"] or row["account_id"],
            "id": row["segment_id"],
            "name": row["segment_name"] or row["segment_id"],
            "tags": [],
            "start": row["first_date"].isoformat(),
            # dense arrays from `start`, one slot per day; null where a day is missing
            "total": [None] * days,
            "added": [None] * days,
            "removed": [None] * days,
            "latest": _int(row["latest_total_members"]),
            "net30": _int(row["net_change_30d"]),
            "growth30": _rate(row["growth_rate_30d"]),
            "churn30": _rate(row["churn_rate_30d"]),
            "start30": _int(row["members_at_start_30d"]),
            "changes": [],
            "anomalies": [],
            "recent": 0,
        }

    def index_of(segment: dict[str, Any], day: dt.date) -> int:
        return (day - dt.date.fromisoformat(segment["start"])).days

    flagged_days: dict[str, set[int]] = {}
    for row in series:
        segment = by_key[_key(row)]
        index = index_of(segment, row["date"])
        segment["total"][index] = _int(row["total_members"])
        segment["added"][index] = _int(row["members_added"])
        segment["removed"][index] = _int(row["members_removed"])
        if row["definition_changed"]:
            flagged_days.setdefault(_key(row), set()).add(index)
    for row in versions:
        segment = by_key.get(_key(row))
        if segment is None:
            continue
        index = index_of(segment, row["date"])
        summary_text = (
            f"Definition v{row['version_number']}: {row['conditions']} condition(s) in "
            f"{row['condition_groups']} group(s): {row['condition_types'] or 'none'}"
        )
        segment["changes"].append([index, summary_text])
        flagged_days.get(_key(row), set()).discard(index)
    # changed days the history could not describe (an older history mart) are still marked
    for key, indexes in flagged_days.items():
        for index in sorted(indexes):
            by_key[key]["changes"].append([index, "The definition changed"])
    recent_from = last_date - dt.timedelta(days=RECENT_DAYS) if last_date else None
    for row in anomalies:
        segment = by_key.get(_key(row))
        if segment is None:
            continue
        segment["anomalies"].append(
            [
                index_of(segment, row["date"]),
                row["metric"],
                int(row["value"]),
                round(float(row["baseline_median"]), 1),
                round(float(row["robust_z"]), 1),
                row["reason"],
            ]
        )
        if row["is_anomaly"] and row["date"] > recent_from:
            segment["recent"] += 1
    for row in tags:
        if _key(row) in by_key and row["tags"]:
            by_key[_key(row)]["tags"] = list(row["tags"])

    ordered = list(by_key.values())
    eligible = [s for s in ordered if s["growth30"] is not None and (s["start30"] or 0) >= MOVERS_MIN_START]
    growing = sorted((s for s in eligible if s["growth30"] > 0), key=lambda s: (-s["growth30"], s["key"]))
    shrinking = sorted((s for s in eligible if s["growth30"] < 0), key=lambda s: (s["growth30"], s["key"]))
    movers = {
        "growing": [s["key"] for s in growing[:MOVERS_PER_SIDE]],
        "shrinking": [s["key"] for s in shrinking[:MOVERS_PER_SIDE]],
    }
    recent_rows = [
        [
            _key(row),
            row["date"].isoformat(),
            row["reason"],
            int(row["value"]),
            round(float(row["baseline_median"]), 1),
            round(float(row["robust_z"]), 1),
        ]
        for row in recent
        if _key(row) in by_key
    ]
    return ReportData(
        segments=ordered,
        movers=movers,
        accounts=sorted({s["account"] for s in ordered}),
        first_date=min((row["first_date"] for row in summary), default=None),
        last_date=last_date,
        anomaly_count_30d=int(recent[0]["recent_count"]) if recent else 0,
        recent_anomalies=recent_rows,
    )
