"""What the growth report shows, read from the analyst copy: a summary of every segment, the 30-day movers,
the recent anomalies and the header's facts (small, computed in SQL), and every segment's daily series,
definition changes and anomalies (large, streamed from DuckDB into compressed chunks: report_packing).
No Dagster here.

Memory stays bounded whatever the size of the copy: DuckDB runs under a memory limit (spilling to a
temporary directory beyond it), the series arrive in Arrow batches in the order the chunks are written,
and only one chunk's days are held in Python at a time.

Every query result is read by column name, never by position: a column added to a query or a mart cannot
shift what the page says.

Only `marts.segment_growth_daily` is required. The definition history, the anomalies mart and the tags on
`marts.segments` are optional, so a copy built by an older version of the models still gets a report (one
without the `platform` column is all Klaviyo).

Two platforms: a `segments_api` segment has rows only on the days its count was recalculated, and no members
added or removed. The page labels each segment's platform and marks the segments whose history is net change
only (NET_ONLY_PLATFORMS), drawing no added/removed bars for them.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from .config import DEFAULT_DUCKDB_MEMORY_LIMIT
from .lake.location import Lake
from .report_packing import CHUNK_DAYS, HAS_ADDED, HAS_REMOVED, HAS_TOTAL, pack, pack_chunk
from .tables import MARTS_SCHEMA, RAW_DATASET

GROWTH_DAILY_TABLE = f"{MARTS_SCHEMA}.segment_growth_daily"
# segments smaller than this 30 days ago are left out of the movers table: +400 % of 3 members is noise
MOVERS_MIN_START = 100
MOVERS_PER_SIDE = 10
# "recent" in the header, the anomaly table and the picker's ⚠: the 30 days ending on the report's newest day
RECENT_DAYS = 30
# the anomaly table lists the newest ones; the header counts them all (marts.segment_anomalies has every one)
ANOMALY_ROWS = 20

# how the page names each platform of marts.segment_growth_daily's `platform` column
PLATFORM_LABELS = {"klaviyo": "Klaviyo", "segments_api": "Segments API"}
# platforms whose history is totals and net change only: no members added or removed, days only where counted
NET_ONLY_PLATFORMS = frozenset({"segments_api"})
# the platform of a daily mart built before the column existed
_OLD_MART_PLATFORM = "klaviyo"

# the page's order of segments: largest first
_SUMMARY_ORDER = "latest_total_members desc nulls last, account_id, segment_id"

# each segment on its own latest day, largest first (the report's table and the chart's top segments):
# arg_max_null keeps the 30-day figures NULL when the latest window is incomplete (arg_max would skip back).
# {platform} is the column, or a constant for a mart from before it (segment_summary_sql)
_SEGMENT_SUMMARY_TEMPLATE = f"""
select
    account_id,
    segment_id,
    {{platform}} as platform,
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
order by {_SUMMARY_ORDER}
"""

# the summary with each segment's place on the page (pos), kept in the session for the queries below
_SEGMENTS_TABLE = "report_segments"
_SEGMENTS_TEMPLATE = f"""
create temp table {_SEGMENTS_TABLE} as
select row_number() over (order by {_SUMMARY_ORDER}) - 1 as pos, * from ({{summary}})
"""


def _has_column(connection: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    return bool(
        connection.execute(
            "select count(*) from information_schema.columns where table_catalog = current_database() "
            "and table_schema = ? and table_name = ? and column_name = ?",
            [schema, table, column],
        ).fetchone()[0]
    )


def segment_summary_sql(connection: duckdb.DuckDBPyConnection) -> str:
    """Each segment's summary (SEGMENT_SUMMARY_TEMPLATE) for this copy's daily mart, with or without `platform`."""
    has_platform = _has_column(connection, MARTS_SCHEMA, "segment_growth_daily", "platform")
    platform = "any_value(platform)" if has_platform else f"'{_OLD_MART_PLATFORM}'"
    return _SEGMENT_SUMMARY_TEMPLATE.format(platform=platform)


# the segments of one chunk (pages positions ? to ?): each query below reads one chunk at a time, so
# nothing is sorted or held beyond a chunk
_CHUNK_SEGMENTS = f"(select * from {_SEGMENTS_TABLE} where pos between $first and $last)"

_SERIES_SQL = f"""
select
    segments.pos,
    cast(daily.date - segments.first_date as integer) as day,
    daily.total_members,
    daily.members_added,
    daily.members_removed
from {GROWTH_DAILY_TABLE} as daily
join {_CHUNK_SEGMENTS} as segments using (account_id, segment_id)
"""

_CHANGED_DAYS_SQL = f"""
select segments.pos, cast(daily.date - segments.first_date as integer) as day
from {GROWTH_DAILY_TABLE} as daily
join {_CHUNK_SEGMENTS} as segments using (account_id, segment_id)
where daily.definition_changed
order by pos, day
"""

# the version that took effect on each changed day, dated in the account's timezone like the daily mart.
# A Klaviyo definition has condition groups of typed conditions; a Segments API one ({"matchType", "filters"})
# is one group of filters on fields. {accounts} holds each account's timezone (_versions_sql)
_VERSIONS_TEMPLATE = f"""
select
    segments.pos,
    cast(cast(timezone(coalesce(accounts.timezone, 'UTC'), history.valid_from) as date)
        - segments.first_date as integer) as day,
    history.version_number,
    coalesce(json_array_length(history.definition, '$.condition_groups'), 1) as condition_groups,
    coalesce(
        json_array_length(history.definition, '$.filters'),
        len(json_extract(history.definition, '$.condition_groups[*].conditions[*]'))
    ) as conditions,
    array_to_string(list_sort(list_distinct(list_concat(
        json_extract_string(history.definition, '$.condition_groups[*].conditions[*].type'),
        json_extract_string(history.definition, '$.filters[*].field')
    ))), ', ') as condition_types
from {MARTS_SCHEMA}.segment_definition_history as history
join {_CHUNK_SEGMENTS} as segments using (account_id, segment_id)
left join {{accounts}} as accounts on accounts.account_id = history.account_id{{same_platform}}
where history.version_number > 1
order by pos, day, version_number
"""


def _versions_sql(connection: duckdb.DuckDBPyConnection) -> str:
    """The version notes' query: every platform's timezones where the models have them in one view
    (intermediate.int_accounts), else the Klaviyo accounts (a copy from before the second platform)."""
    if _has_table(connection, "intermediate", "int_accounts") and _has_column(
        connection, MARTS_SCHEMA, "segment_definition_history", "platform"
    ):
        return _VERSIONS_TEMPLATE.format(
            accounts="intermediate.int_accounts", same_platform=" and accounts.platform = history.platform"
        )
    return _VERSIONS_TEMPLATE.format(accounts=f"{RAW_DATASET}.accounts", same_platform="")


# the anomalies the chart marks (not the definition edits, which the mart keeps with is_anomaly false)
_ANOMALIES_SQL = f"""
select
    segments.pos,
    cast(anomalies.date - segments.first_date as integer) as day,
    anomalies.metric, anomalies.reason, anomalies.value, anomalies.baseline_median, anomalies.robust_z
from {MARTS_SCHEMA}.segment_anomalies as anomalies
join {_CHUNK_SEGMENTS} as segments using (account_id, segment_id)
where anomalies.is_anomaly
order by pos, day, metric
"""

# each segment's anomalies in the last RECENT_DAYS (the picker's ⚠, the movers' count)
_RECENT_BY_SEGMENT_SQL = f"""
select segments.pos, count(*) as recent
from {MARTS_SCHEMA}.segment_anomalies as anomalies
join {_SEGMENTS_TABLE} as segments using (account_id, segment_id)
where anomalies.is_anomaly and anomalies.date > ?::date - {RECENT_DAYS}
group by segments.pos
"""

# the recent anomalies: how many, and the newest ones for the table, the strongest first within a day
_RECENT_ANOMALIES_SQL = f"""
select
    account_id, segment_id, date, reason, value, baseline_median, robust_z,
    count(*) over () as recent_count
from {MARTS_SCHEMA}.segment_anomalies
where is_anomaly and date > ?::date - {RECENT_DAYS}
order by date desc, abs(robust_z) desc, account_id, segment_id, metric
limit {ANOMALY_ROWS}
"""

_TAGS_SQL = f"""
select segments.pos, marts_segments.tags
from {MARTS_SCHEMA}.segments as marts_segments
join {_SEGMENTS_TABLE} as segments using (account_id, segment_id)
"""

# the movers' last 30 days of total members, for their trend lines
_SPARKS_SQL = f"""
select segments.pos, list(daily.total_members order by daily.date) as totals
from {GROWTH_DAILY_TABLE} as daily
join {_SEGMENTS_TABLE} as segments using (account_id, segment_id)
where segments.pos in (select unnest(?::bigint[])) and daily.date > segments.last_date - {RECENT_DAYS}
group by segments.pos
"""


@dataclass(frozen=True)
class PackedChunk:
    """Consecutive segments' days, compressed (report_packing.pack_chunk)."""

    text: str
    length: int
    days: int


@dataclass(frozen=True)
class ReportData:
    """Everything the page embeds. `segments` (a summary each, no series) is ordered largest first."""

    segments: list[dict[str, Any]]
    movers: dict[str, list[str]]
    accounts: list[str]
    # the platforms present and how many segments each has, in PLATFORM_LABELS' order
    platforms: dict[str, int]
    first_date: dt.date | None
    last_date: dt.date | None
    anomaly_count_30d: int
    # the newest anomalies of the last RECENT_DAYS: [segment key, day, reason, value, usual, robust z]
    recent_anomalies: list[list[Any]]
    # each mover's last 30 totals (its trend line)
    sparks: dict[str, list[int | None]]
    # [metric, reason] of each anomaly kind the chunks refer to by index
    anomaly_kinds: list[list[str]]
    chunks: list[PackedChunk] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The small part of the page's data, read before anything is inflated."""
        return {
            "accounts": self.accounts,
            "platforms": self.platforms,
            "platform_labels": PLATFORM_LABELS,
            "net_only_platforms": sorted(NET_ONLY_PLATFORMS),
            "last_date": self.last_date.isoformat() if self.last_date else None,
            "movers": self.movers,
            "sparks": self.sparks,
            "recent_anomalies": self.recent_anomalies,
            "anomaly_count_30d": self.anomaly_count_30d,
            "anomaly_kinds": self.anomaly_kinds,
        }

    def packed_summary(self) -> tuple[str, int]:
        """Every segment's summary, column by column (names repeat less than in objects), packed."""
        import json

        account_index = {name: index for index, name in enumerate(self.accounts)}
        platform_index = {name: index for index, name in enumerate(self.platforms)}
        columns: dict[str, list] = {name: [] for name in _SUMMARY_COLUMNS}
        for segment in self.segments:
            for name in _SUMMARY_COLUMNS:
                if name == "account":
                    columns[name].append(account_index[segment[name]])
                elif name == "platform":
                    columns[name].append(platform_index[segment[name]])
                else:
                    columns[name].append(segment[name])
        return pack(json.dumps(columns, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


_SUMMARY_COLUMNS = (
    "key",
    "account",
    "platform",
    "id",
    "name",
    "tags",
    "start",
    "days",
    "latest",
    "net30",
    "growth30",
    "start30",
    "recent",
    "chunk",
    "offset",
)


def _records(
    connection: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None
) -> list[dict[str, Any]]:
    """A query's rows as dicts keyed by column name."""
    cursor = connection.execute(sql, params or [])
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_table(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        connection.execute(
            "select count(*) from information_schema.tables "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _optional(
    connection: duckdb.DuckDBPyConnection, sql: str, table: str, params: list | dict | None = None
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


def _platform_counts(segments: list[dict[str, Any]]) -> dict[str, int]:
    """How many segments each platform present has; known platforms first, in PLATFORM_LABELS' order."""
    counts: dict[str, int] = {}
    for segment in segments:
        counts[segment["platform"]] = counts.get(segment["platform"], 0) + 1
    order = list(PLATFORM_LABELS)
    return dict(
        sorted(counts.items(), key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0]))
    )


def _key(row: dict[str, Any]) -> str:
    return f"{row['account_id']}/{row['segment_id']}"


def _summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each segment's summary, and the chunk and offset its days go to."""
    segments, chunk, filled = [], 0, 0
    for row in rows:
        days = (row["last_date"] - row["first_date"]).days + 1
        if filled and filled + days > CHUNK_DAYS:
            chunk, filled = chunk + 1, 0
        segments.append(
            {
                "key": _key(row),
                "account": row["account_name"] or row["account_id"],
                "platform": row["platform"],
                "id": row["segment_id"],
                "name": row["segment_name"] or row["segment_id"],
                "tags": [],
                "start": row["first_date"].isoformat(),
                "days": days,
                "latest": _int(row["latest_total_members"]),
                "net30": _int(row["net_change_30d"]),
                "growth30": _rate(row["growth_rate_30d"]),
                "start30": _int(row["members_at_start_30d"]),
                "recent": 0,
                "chunk": chunk,
                "offset": filled,
            }
        )
        filled += days
    return segments


class _AnomalyKinds:
    """[metric, reason] pairs numbered as they first appear: the chunks refer to a kind by its number."""

    def __init__(self) -> None:
        self.numbers: dict[tuple[str, str], int] = {}

    def number(self, metric: str, reason: str) -> int:
        return self.numbers.setdefault((metric, reason), len(self.numbers))

    def as_json(self) -> list[list[str]]:
        return [list(kind) for kind in self.numbers]


def _chunk_notes(
    connection: duckdb.DuckDBPyConnection, bounds: dict[str, int], kinds: _AnomalyKinds
) -> dict[int, list]:
    """Each segment's [definition changes, anomalies] in one chunk, by position."""
    notes: dict[int, list] = {}
    flagged: dict[int, set[int]] = {}
    for row in _records(connection, _CHANGED_DAYS_SQL, bounds):
        flagged.setdefault(row["pos"], set()).add(row["day"])
    for row in _optional(connection, _versions_sql(connection), "segment_definition_history", bounds):
        summary = (
            f"Definition v{row['version_number']}: {row['conditions']} condition(s) in "
            f"{row['condition_groups']} group(s): {row['condition_types'] or 'none'}"
        )
        notes.setdefault(row["pos"], [[], []])[0].append([row["day"], summary])
        flagged.get(row["pos"], set()).discard(row["day"])
    # changed days the history could not describe (an older history mart) are still marked
    for pos, days in flagged.items():
        for day in sorted(days):
            notes.setdefault(pos, [[], []])[0].append([day, "The definition changed"])
    for row in _optional(connection, _ANOMALIES_SQL, "segment_anomalies", bounds):
        notes.setdefault(row["pos"], [[], []])[1].append(
            [
                row["day"],
                kinds.number(row["metric"], row["reason"]),
                int(row["value"]),
                float(row["baseline_median"]),
                float(row["robust_z"]),
            ]
        )
    return notes


def _values(column) -> tuple[np.ndarray, np.ndarray]:
    """A fetched integer column as int64 values (0 where NULL) and where it is present."""
    present = ~np.ma.getmaskarray(column)
    return np.ma.getdata(column).astype(np.int64) * present, present


def _pack_chunk(
    connection: duckdb.DuckDBPyConnection, members: list[dict[str, Any]], first: int, kinds: _AnomalyKinds
) -> PackedChunk:
    """Read one chunk's segments (page positions first, first + 1, ...) and pack them."""
    bounds = {"first": first, "last": first + len(members) - 1}
    offsets = np.array([s["offset"] for s in members], dtype=np.int64)
    size = sum(s["days"] for s in members)
    filled = {name: np.zeros(size, dtype=np.int64) for name in ("total", "added", "removed")}
    mask = np.zeros(size, dtype=np.uint8)
    rows = connection.execute(_SERIES_SQL, bounds).fetchnumpy()
    index = offsets[np.asarray(rows["pos"]) - first] + np.asarray(rows["day"])
    for name, column, flag in (
        ("total", "total_members", HAS_TOTAL),
        ("added", "members_added", HAS_ADDED),
        ("removed", "members_removed", HAS_REMOVED),
    ):
        values, present = _values(rows[column])
        filled[name][index] = values
        mask[index] |= np.where(present, flag, 0).astype(np.uint8)
    notes = _chunk_notes(connection, bounds, kinds)
    changes, anomalies = zip(*(notes.get(first + i, ([], [])) for i in range(len(members))), strict=True)
    text, length = pack_chunk(offsets, filled["total"], filled["added"], filled["removed"], mask, changes, anomalies)
    return PackedChunk(text, length, size)


def _chunks(connection: duckdb.DuckDBPyConnection, segments: list[dict[str, Any]], kinds: _AnomalyKinds):
    """Every chunk, packed one after another."""
    first = 0
    while first < len(segments):
        chunk = segments[first]["chunk"]
        members = [s for s in segments[first:] if s["chunk"] == chunk]
        yield _pack_chunk(connection, members, first, kinds)
        first += len(members)


def connect_read_only(path: Path | Lake, memory_limit: str, spill_dir: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a DuckDB file, or to a lake (attached read-only and in use), that keeps to
    `memory_limit`, spilling to `spill_dir` beyond it."""
    config = {"memory_limit": memory_limit, "temp_directory": spill_dir}
    if isinstance(path, Lake):
        return path.connect(read_only=True, config=config)
    return duckdb.connect(str(path), read_only=True, config=config)


def source_name(source: Path | Lake) -> str:
    """How the report names where it was read from: the file's name, or the lake's catalog."""
    return f"the DuckLake {source.catalog.describe()}" if isinstance(source, Lake) else source.name


def read_report_data(path: Path | Lake, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> ReportData:
    """Read the report's data from a DuckDB file with the marts (normally the analyst copy), read-only."""
    with (
        tempfile.TemporaryDirectory(prefix="growth-report-") as spill_dir,
        connect_read_only(path, memory_limit, spill_dir) as connection,
    ):
        if not _has_table(connection, MARTS_SCHEMA, "segment_growth_daily"):
            raise LookupError(f"{path} has no {GROWTH_DAILY_TABLE}: build the dbt models (and publish) first")
        connection.execute(_SEGMENTS_TEMPLATE.format(summary=segment_summary_sql(connection)))
        rows = _records(connection, f"select * from {_SEGMENTS_TABLE} order by pos")
        segments = _summaries(rows)
        for row in _optional(connection, _TAGS_SQL, "segments"):
            segments[row["pos"]]["tags"] = list(row["tags"] or [])
        first_date = min((row["first_date"] for row in rows), default=None)
        last_date = max((row["last_date"] for row in rows), default=None)
        recent = _optional(connection, _RECENT_ANOMALIES_SQL, "segment_anomalies", [last_date]) if rows else []
        for row in _optional(connection, _RECENT_BY_SEGMENT_SQL, "segment_anomalies", [last_date]) if rows else []:
            segments[row["pos"]]["recent"] = int(row["recent"])

        eligible = [s for s in segments if s["growth30"] is not None and (s["start30"] or 0) >= MOVERS_MIN_START]
        growing = sorted((s for s in eligible if s["growth30"] > 0), key=lambda s: (-s["growth30"], s["key"]))
        shrinking = sorted((s for s in eligible if s["growth30"] < 0), key=lambda s: (s["growth30"], s["key"]))
        movers = {
            "growing": [s["key"] for s in growing[:MOVERS_PER_SIDE]],
            "shrinking": [s["key"] for s in shrinking[:MOVERS_PER_SIDE]],
        }
        position = {s["key"]: pos for pos, s in enumerate(segments)}
        mover_positions = [position[key] for side in movers.values() for key in side]
        sparks = {
            segments[row["pos"]]["key"]: [_int(v) for v in row["totals"]]
            for row in _records(connection, _SPARKS_SQL, [mover_positions])
        }
        kinds = _AnomalyKinds()
        chunks = list(_chunks(connection, segments, kinds))

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
    ]
    return ReportData(
        segments=segments,
        movers=movers,
        accounts=sorted({s["account"] for s in segments}),
        platforms=_platform_counts(segments),
        first_date=first_date,
        last_date=last_date,
        anomaly_count_30d=int(recent[0]["recent_count"]) if recent else 0,
        recent_anomalies=recent_rows,
        sparks=sparks,
        anomaly_kinds=kinds.as_json(),
        chunks=chunks,
    )
