"""The dbt project against a synthetic warehouse, checked against values computed here with pandas.

The module builds one DuckDB file with the four raw Klaviyo tables (as dlt writes them), runs `dbt build`
once, and compares every mart with an independent pandas computation. Copies of it whose raw tables then
change check that an incremental build rewrites exactly the rows that changed and equals a full rebuild. The worked
queries of docs/for-sql-analysts.md run against the built models so they cannot rot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from segment_pipeline.config import DEFAULT_ACCOUNT_NAME

from . import segments_api_raw

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO / "dbt_project"
ANALYST_DOCS = REPO / "docs" / "for-sql-analysts.md"

FIRST_DAY = dt.date(2024, 1, 1)
LAST_DAY = dt.date(2024, 3, 31)
LOADED_AT = dt.datetime(2024, 4, 1, 6, 0, tzinfo=dt.UTC)

pytestmark = pytest.mark.timeout(300)


# ---------------------------------------------------------------------------------------------------------
# synthetic raw data
# ---------------------------------------------------------------------------------------------------------


def _definition(*groups: list[dict]) -> dict:
    return {"condition_groups": [{"conditions": list(conditions)} for conditions in groups]}


def _in_list(*ids: str) -> dict:
    return {"type": "profile-group-membership", "is_member": True, "group_ids": list(ids), "timeframe_filter": None}


def _did_metric(metric_id: str) -> dict:
    return {
        "type": "profile-metric",
        "metric_id": metric_id,
        "measurement": "count",
        "measurement_filter": {"type": "numeric", "operator": "greater-than", "value": 0},
        "timeframe_filter": {"type": "date", "operator": "in-the-last", "unit": "day", "quantity": 30},
        "metric_filters": None,
    }


def _in_region(region: str) -> dict:
    return {"type": "profile-region", "in_region": region, "is_in_region": True}


@dataclass
class SyntheticSegment:
    account_id: str
    segment_id: str
    name: str
    created: dt.datetime
    # (definition, segment_updated, first_seen_at) in the order they took effect
    versions: list[tuple[dict, dt.datetime, dt.datetime]]
    start_members: int | None  # None: no series rows at all
    series_days: list[dt.date] = field(default_factory=list)
    is_deleted: bool = False


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def _days(first: dt.date, last: dt.date, skip: set[dt.date] = frozenset()) -> list[dt.date]:
    days = []
    day = first
    while day <= last:
        if day not in skip:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


ACCOUNTS = {"acct_ny": "US/Eastern", "acct_tokyo": "Asia/Tokyo"}
# the short names of the accounts file; acct_ny's row was loaded before account_name existed (NULL), so
# the marts call it by the name a deployment without the file gives its one account
ACCOUNT_NAMES = {"acct_ny": None, "acct_tokyo": "tokyo_store"}


def account_name(account_id: str) -> str:
    """The name every mart row of the account must carry."""
    return ACCOUNT_NAMES[account_id] or DEFAULT_ACCOUNT_NAME


SEGMENTS = [
    SyntheticSegment(
        "acct_ny",
        "EngA1",
        "Engaged 30d",
        _utc(2023, 6, 1, 12),
        [
            (
                _definition([_did_metric("OpenM1"), _did_metric("ClickM2")], [_in_list("ListNews")]),
                _utc(2023, 6, 1, 12),
                _utc(2024, 1, 1, 6),
            )
        ],
        start_members=5000,
        series_days=_days(FIRST_DAY, LAST_DAY),
    ),
    # starts empty: the rates of its first days and of its first complete windows are undefined
    SyntheticSegment(
        "acct_ny",
        "NewZ0",
        "New signups",
        _utc(2023, 12, 30, 9),
        [(_definition([_in_list("ListSignup")]), _utc(2023, 12, 30, 9), _utc(2024, 1, 1, 6))],
        start_members=0,
        series_days=_days(FIRST_DAY, LAST_DAY),
    ),
    # edited twice; the first edit is 2024-02-10 03:30 UTC = 2024-02-09 22:30 in New York
    SyntheticSegment(
        "acct_ny",
        "VipE3",
        # named as in the demo, so the analysts' guide's example segment exists here too
        'VIP "Gold" customers',
        _utc(2023, 3, 15, 8),
        [
            (_definition([_did_metric("OrderM9")]), _utc(2023, 11, 2, 10), _utc(2024, 1, 1, 6)),
            (_definition([_did_metric("OrderM9")], [_in_region("US")]), _utc(2024, 2, 10, 3, 30), _utc(2024, 2, 10, 6)),
            (
                _definition([_did_metric("OrderM9"), _in_list("ListVip", "ListNews")], [_in_region("US")]),
                _utc(2024, 3, 5, 15),
                _utc(2024, 3, 6, 6),
            ),
        ],
        start_members=800,
        series_days=_days(FIRST_DAY, LAST_DAY),
    ),
    # gaps: a three-day hole and a single missing day
    SyntheticSegment(
        "acct_ny",
        "GapW4",
        "Winback",
        _utc(2023, 9, 1),
        [(_definition([_did_metric("OpenM1")], [_in_list("ListLapsed")]), _utc(2023, 9, 1), _utc(2024, 1, 1, 6))],
        start_members=1200,
        series_days=_days(
            FIRST_DAY,
            LAST_DAY,
            {dt.date(2024, 1, 20), dt.date(2024, 1, 21), dt.date(2024, 1, 22), dt.date(2024, 2, 14)},
        ),
    ),
    # shrinking, and Klaviyo's numbers break both identities on a few days
    SyntheticSegment(
        "acct_ny",
        "LapL5",
        "Lapsed buyers",
        _utc(2022, 1, 1),
        [(_definition([_did_metric("OrderM9")]), _utc(2022, 1, 1), _utc(2024, 1, 1, 6))],
        start_members=3000,
        series_days=_days(FIRST_DAY, LAST_DAY),
    ),
    # the same segment id in another account must not mix with acct_ny's
    SyntheticSegment(
        "acct_tokyo",
        "EngA1",
        "Engaged JP",
        _utc(2023, 1, 1),
        [
            (_definition([_did_metric("OpenJP")]), _utc(2023, 1, 1), _utc(2024, 1, 1, 6)),
            # 2024-02-09 20:00 UTC is already 2024-02-10 in Tokyo
            (_definition([_did_metric("OpenJP"), _did_metric("ClickJP")]), _utc(2024, 2, 9, 20), _utc(2024, 2, 10, 6)),
        ],
        start_members=700,
        series_days=_days(dt.date(2024, 1, 15), LAST_DAY),
    ),
    # deleted in Klaviyo and never reported
    SyntheticSegment(
        "acct_tokyo",
        "OldD7",
        "Old test segment",
        _utc(2021, 5, 5),
        [(_definition(), _utc(2021, 5, 5), _utc(2024, 1, 1, 6))],
        start_members=None,
        is_deleted=True,
    ),
]

SEGMENT_SHRINKING = ("acct_ny", "LapL5")
SEGMENT_ZERO_START = ("acct_ny", "NewZ0")
# one churn spike the anomaly mart must find: 300 extra members leave this segment on this day
SEGMENT_CHURN_SPIKE = ("acct_ny", "EngA1", dt.date(2024, 3, 10))
# tags as klaviyo.segment_tags holds them: one row per segment, the tags as a JSON list
SEGMENT_TAGS = {
    ("acct_ny", "EngA1"): [{"id": "tag-life", "name": "Lifecycle"}, {"id": "tag-news", "name": "Newsletter"}],
    ("acct_ny", "VipE3"): [{"id": "tag-life", "name": "Lifecycle"}],
    ("acct_ny", "NewZ0"): [],
}
SEGMENT_EDITED = ("acct_ny", "VipE3")


def _definition_hash(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def _series_rows(segment: SyntheticSegment, rng: random.Random) -> list[dict]:
    """Daily rows whose identities hold, except where a segment is meant to break them."""
    rows = []
    total = segment.start_members
    shrinking = (segment.account_id, segment.segment_id) == SEGMENT_SHRINKING
    zero_start = (segment.account_id, segment.segment_id) == SEGMENT_ZERO_START
    for index, day in enumerate(segment.series_days):
        if zero_start and index < 3:
            added, removed = 0, 0  # stays empty for three days, then starts filling
        elif shrinking:
            added, removed = rng.randint(0, 10), rng.randint(15, 40)
        else:
            added, removed = rng.randint(0, max(3, total // 40)), rng.randint(0, max(2, total // 60))
        if (segment.account_id, segment.segment_id, day) == SEGMENT_CHURN_SPIKE:
            removed += 300
        removed = min(removed, total + added)
        total = total + added - removed
        rows.append(
            {
                "account_id": segment.account_id,
                "segment_id": segment.segment_id,
                "date": day,
                "total_members": total,
                "members_added": added,
                "members_removed": removed,
                "net_members_changed": added - removed,
            }
        )
    if shrinking:
        rows[40]["net_members_changed"] += 3  # net <> added - removed
        rows[60]["total_members"] += 25  # total <> yesterday + net
    return rows


def synthetic_raw_tables() -> dict[str, pd.DataFrame]:
    """The four raw tables, with dlt's bookkeeping columns, as dlt would have loaded them."""
    rng = random.Random(20240101)
    accounts = pd.DataFrame(
        [
            {"account_id": a, "timezone": tz, "account_name": ACCOUNT_NAMES[a], "_loaded_at": LOADED_AT}
            for a, tz in ACCOUNTS.items()
        ]
    )
    segments, definitions, series = [], [], []
    for segment in SEGMENTS:
        current, updated, _ = segment.versions[-1]
        segments.append(
            {
                "account_id": segment.account_id,
                "id": segment.segment_id,
                "name": segment.name,
                "definition": json.dumps(current),
                "created": segment.created,
                "updated": updated,
                "is_active": not segment.is_deleted,
                "is_processing": False,
                "is_starred": segment.segment_id == "VipE3",
                "is_deleted": segment.is_deleted,
                "_loaded_at": LOADED_AT,
            }
        )
        for definition, segment_updated, first_seen_at in segment.versions:
            definitions.append(
                {
                    "account_id": segment.account_id,
                    "segment_id": segment.segment_id,
                    "definition_hash": _definition_hash(definition),
                    "definition": json.dumps(definition),
                    "segment_updated": segment_updated,
                    "first_seen_at": first_seen_at,
                }
            )
        if segment.start_members is not None:
            for row in _series_rows(segment, rng):
                series.append({**row, "_loaded_at": LOADED_AT})
    tags = pd.DataFrame(
        [
            {"account_id": a, "segment_id": sid, "tags": json.dumps(t), "tag_count": len(t), "_loaded_at": LOADED_AT}
            for (a, sid), t in SEGMENT_TAGS.items()
        ]
    )
    tables = {
        "segment_tags": tags,
        "accounts": accounts,
        "segments": pd.DataFrame(segments),
        "segment_definitions": pd.DataFrame(definitions),
        "segment_series_daily": pd.DataFrame(series),
    }
    for name, frame in tables.items():
        frame["_dlt_load_id"] = "1711951200.0"
        frame["_dlt_id"] = [f"{name}-{i}" for i in range(len(frame))]
    return tables


RAW_DDL = {
    "segment_tags": "account_id varchar, segment_id varchar, tags json, tag_count bigint, _loaded_at timestamptz",
    "accounts": "account_id varchar, timezone varchar, account_name varchar, _loaded_at timestamptz",
    "segments": (
        "account_id varchar, id varchar, name varchar, definition json, created timestamptz, updated timestamptz, "
        "is_active boolean, is_processing boolean, is_starred boolean, is_deleted boolean, _loaded_at timestamptz"
    ),
    "segment_definitions": (
        "account_id varchar, segment_id varchar, definition_hash varchar, definition json, "
        "segment_updated timestamptz, first_seen_at timestamptz"
    ),
    "segment_series_daily": (
        "account_id varchar, segment_id varchar, date date, total_members bigint, members_added bigint, "
        "members_removed bigint, net_members_changed bigint, _loaded_at timestamptz"
    ),
}


def write_raw_warehouse(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute("set timezone = 'UTC'")
        connection.execute("create schema if not exists klaviyo")
        for name, columns in RAW_DDL.items():
            connection.execute(f"create table klaviyo.{name} ({columns}, _dlt_load_id varchar, _dlt_id varchar)")
            frame = tables[name]  # noqa: F841 - read by DuckDB's replacement scan below
            names = [c.split()[0] for c in columns.split(", ")] + ["_dlt_load_id", "_dlt_id"]
            column_list = ", ".join(names)
            connection.execute(f"insert into klaviyo.{name} ({column_list}) select {column_list} from frame")


# ---------------------------------------------------------------------------------------------------------
# running dbt
# ---------------------------------------------------------------------------------------------------------


def run_dbt(args: list[str], warehouse: Path, work_dir: Path) -> subprocess.CompletedProcess:
    """Run dbt in a subprocess (as dagster-dbt does), so no DuckDB handle outlives the command."""
    dbt = Path(sys.executable).with_name("dbt")
    command = [
        str(dbt) if dbt.exists() else "dbt",
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
    ]
    env = {**os.environ, "WAREHOUSE_PATH": str(warehouse), "DO_NOT_TRACK": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        pytest.fail(
            f"dbt {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
        )
    return result


def query(warehouse: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        connection.execute("set timezone = 'UTC'")
        return connection.execute(sql).df()


@dataclass
class BuiltWarehouse:
    path: Path
    raw: dict[str, pd.DataFrame]
    run_results: dict
    manifest: dict


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    work = tmp_path_factory.mktemp("dbt_build")
    warehouse = work / "warehouse.duckdb"
    raw = synthetic_raw_tables()
    write_raw_warehouse(warehouse, raw)
    run_dbt(["build"], warehouse, work)
    run_results = json.loads((work / "target" / "run_results.json").read_text())
    manifest = json.loads((work / "target" / "manifest.json").read_text())
    return BuiltWarehouse(warehouse, raw, run_results, manifest)


# ---------------------------------------------------------------------------------------------------------
# expected values, computed independently with pandas
# ---------------------------------------------------------------------------------------------------------

DAILY_KEYS = ["account_id", "segment_id", "date"]


def _rate(flow: float, start: float | None) -> float:
    return flow / start if start is not None and not pd.isna(start) and start > 0 else np.nan


def expected_definition_changes() -> set[tuple[str, str, dt.date]]:
    """(account, segment, local day) on which a version other than the first took effect."""
    changes = set()
    for segment in SEGMENTS:
        zone = ZoneInfo(ACCOUNTS[segment.account_id])
        for _, segment_updated, _ in segment.versions[1:]:
            changes.add((segment.account_id, segment.segment_id, segment_updated.astimezone(zone).date()))
    return changes


def expected_daily(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    names = {(r.account_id, r.id): r.name for r in raw["segments"].itertuples()}
    changes = expected_definition_changes()
    rows = []
    for (account_id, segment_id), group in raw["segment_series_daily"].groupby(["account_id", "segment_id"]):
        by_day = {r.date: r for r in group.itertuples()}
        for day, r in sorted(by_day.items()):
            start = r.total_members - r.net_members_changed
            row = {
                "platform": "klaviyo",
                "account_id": account_id,
                "account_name": account_name(account_id),
                "segment_id": segment_id,
                "segment_name": names[(account_id, segment_id)],
                "date": day,
                "total_members": r.total_members,
                "members_added": r.members_added,
                "members_removed": r.members_removed,
                "net_members_changed": r.net_members_changed,
                "change_days": 1,
                "is_multi_day_change": False,
                "members_at_start": start,
                "growth_rate": _rate(r.net_members_changed, start),
                "churn_rate": _rate(r.members_removed, start),
                "add_rate": _rate(r.members_added, start),
            }
            for length in (7, 30):
                window_days = [day - dt.timedelta(days=k) for k in range(length)]
                present = [by_day[d] for d in window_days if d in by_day]
                first = by_day.get(window_days[-1])
                # start and sums only for a complete window: all `length` days present
                complete = len(present) == length
                window_start = first.total_members - first.net_members_changed if complete else np.nan
                net = sum(p.net_members_changed for p in present) if complete else np.nan
                added = sum(p.members_added for p in present) if complete else np.nan
                removed = sum(p.members_removed for p in present) if complete else np.nan
                row |= {
                    f"days_present_{length}d": len(present),
                    f"members_at_start_{length}d": window_start,
                    f"net_change_{length}d": net,
                    f"members_added_{length}d": added,
                    f"members_removed_{length}d": removed,
                    f"growth_rate_{length}d": _rate(net, window_start),
                    f"churn_rate_{length}d": _rate(removed, window_start),
                    f"add_rate_{length}d": _rate(added, window_start),
                }
            previous = by_day.get(day - dt.timedelta(days=1))
            row["definition_changed"] = (account_id, segment_id, day) in changes
            row["identity_holds"] = bool(
                r.net_members_changed == r.members_added - r.members_removed
                and (previous is None or r.total_members == previous.total_members + r.net_members_changed)
            )
            rows.append(row)
    return pd.DataFrame(rows)


def expected_rollup(daily: pd.DataFrame, period_column: str) -> pd.DataFrame:
    daily = daily.copy()
    dates = pd.to_datetime(daily["date"])
    if period_column == "week_start":
        daily[period_column] = (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.date
    else:
        daily[period_column] = dates.dt.to_period("M").dt.start_time.dt.date
    rows = []
    for (account_id, segment_id, period), group in daily.groupby(["account_id", "segment_id", period_column]):
        group = group.sort_values("date")
        start = group["members_at_start"].iloc[0]
        added, removed, net = (group[c].sum() for c in ("members_added", "members_removed", "net_members_changed"))
        rows.append(
            {
                "platform": "klaviyo",
                "account_id": account_id,
                "account_name": account_name(account_id),
                "segment_id": segment_id,
                "segment_name": group["segment_name"].iloc[-1],
                period_column: period,
                "first_date": group["date"].iloc[0],
                "last_date": group["date"].iloc[-1],
                "days_covered": len(group),
                "changes_from": group["date"].iloc[0],
                "multi_day_changes": 0,
                "members_at_start": start,
                "members_at_end": group["total_members"].iloc[-1],
                "members_added": added,
                "members_removed": removed,
                "net_members_changed": net,
                "growth_rate": _rate(net, start),
                "churn_rate": _rate(removed, start),
                "add_rate": _rate(added, start),
            }
        )
    return pd.DataFrame(rows)


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Equal row sets and values; numbers compared as floats (NULL == NaN), dates as dates."""
    assert sorted(actual.columns) == sorted(expected.columns)
    columns = list(expected.columns)

    def normalise(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[columns].copy()
        for column in columns:
            values = frame[column]
            if column in (
                "date",
                "week_start",
                "month_start",
                "first_date",
                "last_date",
                "latest_date",
                "changes_from",
            ):
                frame[column] = pd.to_datetime(values).dt.date
            elif pd.api.types.is_bool_dtype(values) or column in (
                "definition_changed",
                "identity_holds",
                "is_multi_day_change",
            ):
                frame[column] = values.astype(bool)
            elif column not in ("platform", "account_id", "account_name", "segment_id", "segment_name"):
                frame[column] = pd.to_numeric(values).astype("float64")
        return frame.sort_values(keys).reset_index(drop=True)

    pd.testing.assert_frame_equal(normalise(actual), normalise(expected), check_exact=False, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------------------
# the full build
# ---------------------------------------------------------------------------------------------------------


def test_build_creates_the_schemas_and_relations(built: BuiltWarehouse) -> None:
    relations = query(built.path, "select table_schema, table_name, table_type from information_schema.tables")
    found = {(r.table_schema, r.table_name): r.table_type for r in relations.itertuples()}
    for mart in (
        "segment_growth_daily",
        "segment_growth_weekly",
        "segment_growth_monthly",
        "segments",
        "segment_definition_history",
        "segment_anomalies",
        "segment_growth_by_tag_daily",
        "segment_growth_by_tag_weekly",
    ):
        assert found[("marts", mart)] == "BASE TABLE"
    for view in (
        "stg_klaviyo__accounts",
        "stg_klaviyo__segments",
        "stg_klaviyo__segment_definitions",
        "stg_klaviyo__segment_series_daily",
    ):
        assert found[("staging", view)] == "VIEW"
    assert not {schema for schema, _ in found if schema.startswith("main_")}, "schemas must not get a prefix"


def test_staging_drops_the_dlt_columns(built: BuiltWarehouse) -> None:
    columns = query(built.path, "select column_name from information_schema.columns where table_schema = 'staging'")
    assert not {c for c in columns["column_name"] if c.startswith("_dlt")}


def test_every_test_passes_and_only_the_identity_tests_warn(built: BuiltWarehouse) -> None:
    statuses = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    warned = sorted(uid.split(".")[2] for uid, status in statuses.items() if status == "warn")
    assert warned == [
        "assert_net_members_changed_equals_added_minus_removed",
        "assert_total_members_follow_previous_day",
    ]
    failed = {uid: s for uid, s in statuses.items() if s not in ("pass", "success", "warn")}
    assert not failed
    # every unit test declared in the models' YAML ran (and passed, above)
    declared = {
        test["name"]
        for path in (DBT_PROJECT_DIR / "models").rglob("*.yml")
        for test in (yaml.safe_load(path.read_text()) or {}).get("unit_tests", [])
    }
    assert declared and {uid.rsplit(".", 1)[1] for uid in statuses if uid.startswith("unit_test.")} == declared


def test_every_model_column_has_a_description(built: BuiltWarehouse) -> None:
    for node in built.manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        columns = query(
            built.path,
            f"""
            select column_name from information_schema.columns
            where table_schema = '{node["schema"]}' and table_name = '{node["name"]}'
        """,
        )["column_name"]
        documented = {name for name, column in node["columns"].items() if column.get("description")}
        assert set(columns) == documented, node["name"]


def test_sources_join_the_dlt_asset_keys(built: BuiltWarehouse) -> None:
    keys = {
        (source["source_name"], source["name"]): source["config"]["meta"]["dagster"]["asset_key"]
        for source in built.manifest["sources"].values()
    }
    # the ingest assets materialize one key per raw table (segment_pipeline/defs/ingest/assets.py)
    assert keys == {
        **{("klaviyo", table): ["klaviyo", table] for table in RAW_DDL},
        **{("segments_api", table): ["segments_api", table] for table in segments_api_raw.RAW_DDL},
    }


def test_segment_growth_daily_matches_pandas(built: BuiltWarehouse) -> None:
    actual = query(built.path, "select * from marts.segment_growth_daily")
    expected = expected_daily(built.raw)
    assert_same_rows(actual, expected, DAILY_KEYS)
    # the scenarios the synthetic data was built for are really in there
    assert actual["growth_rate"].isna().any() and actual["growth_rate_30d"].notna().any()
    assert (~actual["identity_holds"]).sum() == 3
    assert actual["definition_changed"].sum() == 3


def test_zero_member_start_gives_null_rates(built: BuiltWarehouse) -> None:
    rows = query(
        built.path,
        """
        select date, members_at_start, growth_rate, members_at_start_7d, growth_rate_7d
        from marts.segment_growth_daily where account_id = 'acct_ny' and segment_id = 'NewZ0' order by date
    """,
    )
    assert (rows["members_at_start"].iloc[:4] == 0).all() and rows["growth_rate"].iloc[:4].isna().all()
    # the first complete 7-day window starts on day one, with zero members
    assert rows["members_at_start_7d"].iloc[6] == 0 and pd.isna(rows["growth_rate_7d"].iloc[6])


def test_definition_changes_are_dated_in_the_account_timezone(built: BuiltWarehouse) -> None:
    rows = query(
        built.path,
        """
        select account_id, segment_id, date from marts.segment_growth_daily where definition_changed order by all
    """,
    )
    assert [(r.account_id, r.segment_id, r.date.date()) for r in rows.itertuples()] == [
        ("acct_ny", "VipE3", dt.date(2024, 2, 9)),  # 03:30 UTC on the 10th is the evening of the 9th in New York
        ("acct_ny", "VipE3", dt.date(2024, 3, 5)),
        ("acct_tokyo", "EngA1", dt.date(2024, 2, 10)),  # 20:00 UTC on the 9th is the morning of the 10th in Tokyo
    ]


@pytest.mark.parametrize(
    "period_column, table", [("week_start", "segment_growth_weekly"), ("month_start", "segment_growth_monthly")]
)
def test_rollups_match_pandas(built: BuiltWarehouse, period_column: str, table: str) -> None:
    actual = query(built.path, f"select * from marts.{table}")
    expected = expected_rollup(expected_daily(built.raw), period_column)
    assert_same_rows(actual, expected, ["account_id", "segment_id", period_column])


def test_weeks_start_on_monday_and_months_on_the_first(built: BuiltWarehouse) -> None:
    weeks = query(built.path, "select distinct week_start from marts.segment_growth_weekly")
    months = query(built.path, "select distinct month_start from marts.segment_growth_monthly")
    assert {d.weekday() for d in pd.to_datetime(weeks["week_start"])} == {0}
    assert {d.day for d in pd.to_datetime(months["month_start"])} == {1}


def test_segment_definition_history_matches(built: BuiltWarehouse) -> None:
    actual = query(
        built.path, "select * from marts.segment_definition_history order by account_id, segment_id, version_number"
    )
    expected = []
    for segment in SEGMENTS:
        for number, (definition, segment_updated, first_seen_at) in enumerate(segment.versions, start=1):
            valid_to = segment.versions[number][1] if number < len(segment.versions) else None
            expected.append(
                (
                    segment.account_id,
                    account_name(segment.account_id),
                    segment.segment_id,
                    segment.name,
                    number,
                    definition,
                    _definition_hash(definition),
                    segment.created if number == 1 else segment_updated,
                    valid_to,
                    valid_to is None,
                    first_seen_at,
                )
            )
    expected.sort(key=lambda row: (row[0], row[2], row[4]))
    got = [
        (
            r.account_id,
            r.account_name,
            r.segment_id,
            r.segment_name,
            r.version_number,
            json.loads(r.definition),
            r.definition_hash,
            r.valid_from.to_pydatetime(),
            None if pd.isna(r.valid_to) else r.valid_to.to_pydatetime(),
            bool(r.is_current),
            r.first_seen_at.to_pydatetime(),
        )
        for r in actual.itertuples()
    ]
    assert got == expected


def test_segments_summary_matches(built: BuiltWarehouse) -> None:
    actual = query(built.path, "select * from marts.segments order by account_id, segment_id")
    series = built.raw["segment_series_daily"]
    assert len(actual) == len(SEGMENTS)
    for segment in SEGMENTS:
        row = actual[(actual.account_id == segment.account_id) & (actual.segment_id == segment.segment_id)].iloc[0]
        definition = segment.versions[-1][0]
        conditions = [c for group in definition["condition_groups"] for c in group["conditions"]]
        assert row.segment_name == segment.name
        assert row.account_name == account_name(segment.account_id)
        assert row.created_at.to_pydatetime() == segment.created
        assert row.updated_at.to_pydatetime() == segment.versions[-1][1]
        assert bool(row.is_deleted) == segment.is_deleted and bool(row.is_active) == (not segment.is_deleted)
        assert row.condition_group_count == len(definition["condition_groups"])
        assert row.condition_count == len(conditions)
        assert list(row.condition_types) == sorted({c["type"] for c in conditions})
        assert row.condition_types_text == ", ".join(sorted({c["type"] for c in conditions}))
        assert list(row.list_ids) == sorted({i for c in conditions for i in c.get("group_ids", [])})
        funnel_steps = {step["metric_id"] for c in conditions for step in c.get("steps") or []}
        assert list(row.metric_ids) == sorted({c["metric_id"] for c in conditions if "metric_id" in c} | funnel_steps)
        assert json.loads(row.definition) == definition
        assert row.definition_version_count == len(segment.versions)
        own = series[(series.account_id == segment.account_id) & (series.segment_id == segment.segment_id)]
        if own.empty:
            assert pd.isna(row.latest_total_members) and pd.isna(row.latest_date)
        else:
            last = own.sort_values("date").iloc[-1]
            assert row.latest_total_members == last.total_members and row.latest_date.date() == last.date


# ---------------------------------------------------------------------------------------------------------
# an incremental build after the raw tables changed
# ---------------------------------------------------------------------------------------------------------


def _copy_warehouse(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + ".wal"))


# a day revised after the build, and a day whose raw row goes away
REVISED = ("acct_ny", "EngA1", dt.date(2024, 2, 20))
REMOVED = ("acct_tokyo", "EngA1", dt.date(2024, 3, 1))
RENAMED = ("acct_ny", "NewZ0")
# growth_rate is never compared by the change detection: a sentinel there shows which rows were rewritten
UNTOUCHED = 123.25  # within the column's accepted range, so the build's tests pass

RAW_CHANGES = f"""
    update klaviyo.segment_series_daily
    set members_added = members_added + 7, net_members_changed = net_members_changed + 7,
        total_members = total_members + 7
    where account_id = '{REVISED[0]}' and segment_id = '{REVISED[1]}' and date = date '{REVISED[2]}';
    delete from klaviyo.segment_series_daily
    where account_id = '{REMOVED[0]}' and segment_id = '{REMOVED[1]}' and date = date '{REMOVED[2]}';
    update klaviyo.segments set name = 'Renamed "new" signups'
    where account_id = '{RENAMED[0]}' and id = '{RENAMED[1]}';
"""


@pytest.fixture(scope="module")
def incremental(built: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the built warehouse whose raw tables changed, after an incremental `dbt build`, and a
    copy with the same raw changes rebuilt with --full-refresh."""
    work = tmp_path_factory.mktemp("dbt_incremental")
    warehouse, rebuilt = work / "warehouse.duckdb", work / "rebuilt.duckdb"
    for path in (warehouse, rebuilt):
        _copy_warehouse(built.path, path)
        with duckdb.connect(str(path)) as connection:
            connection.execute(RAW_CHANGES)
            connection.execute(f"update marts.segment_growth_daily set growth_rate = {UNTOUCHED}")
    run_dbt(["build"], warehouse, work)
    run_dbt(["run", "--full-refresh"], rebuilt, work)
    return warehouse, rebuilt


def test_an_incremental_build_rewrites_exactly_the_rows_that_changed(incremental: tuple[Path, Path]) -> None:
    warehouse, _ = incremental
    rows = query(warehouse, "select account_id, segment_id, date, growth_rate from marts.segment_growth_daily")
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    rewritten = set(map(tuple, rows.loc[rows.growth_rate != UNTOUCHED, ["account_id", "segment_id", "date"]].values))
    series = query(warehouse, "select account_id, segment_id, date from klaviyo.segment_series_daily")
    series["date"] = pd.to_datetime(series["date"]).dt.date
    present = set(map(tuple, series.values))

    def following(key: tuple, first: int) -> set[tuple]:
        account, segment, day = key
        days = {(account, segment, day + dt.timedelta(days=n)) for n in range(first, 30)}
        return days & present

    renamed = {key for key in present if key[:2] == RENAMED}
    # the revised day and the 29 after it; the 29 after the removed day; every day of the renamed segment
    assert rewritten == following(REVISED, 0) | following(REMOVED, 1) | renamed
    assert REMOVED not in set(map(tuple, rows[["account_id", "segment_id", "date"]].values))


def test_an_incremental_build_equals_a_full_rebuild(incremental: tuple[Path, Path]) -> None:
    warehouse, rebuilt = incremental
    for mart, keys in (
        ("segment_growth_daily", DAILY_KEYS),
        ("segment_growth_weekly", ["account_id", "segment_id", "week_start"]),
        ("segment_growth_monthly", ["account_id", "segment_id", "month_start"]),
        ("segments", ["account_id", "segment_id"]),
    ):
        # only the sentinel column of the rows nothing changed may differ
        columns = "* exclude (growth_rate)" if mart == "segment_growth_daily" else "*"
        sql = f"select {columns} from marts.{mart} order by {', '.join(keys)}"
        with duckdb.connect(str(warehouse), read_only=True) as a, duckdb.connect(str(rebuilt), read_only=True) as b:
            assert a.execute(sql).fetchall() == b.execute(sql).fetchall(), mart
    # and a build with nothing new rewrites nothing
    before = query(warehouse, "select * from marts.segment_growth_daily")
    run_dbt(["run", "--select", "segment_growth_daily"], warehouse, warehouse.parent)
    assert_same_rows(query(warehouse, "select * from marts.segment_growth_daily"), before, DAILY_KEYS)


# ---------------------------------------------------------------------------------------------------------
# the analyst docs and hand-off
# ---------------------------------------------------------------------------------------------------------


def analyst_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", ANALYST_DOCS.read_text(), flags=re.DOTALL)


def test_the_docs_have_at_least_five_worked_queries() -> None:
    assert len(analyst_queries()) >= 5


@pytest.mark.parametrize("index", range(len(analyst_queries()) if ANALYST_DOCS.exists() else 0))
def test_worked_query_runs_and_returns_rows(built: BuiltWarehouse, index: int) -> None:
    sql = analyst_queries()[index]
    result = query(built.path, sql)
    assert len(result) > 0, f"worked query {index + 1} returned no rows:\n{sql}"


def test_every_mart_column_is_documented_for_analysts(built: BuiltWarehouse) -> None:
    # each table's columns in that table's own section (a "## `marts.x`" heading may name two tables)
    sections = re.split(r"^## ", ANALYST_DOCS.read_text(), flags=re.MULTILINE)
    columns = query(
        built.path, "select table_name, column_name from information_schema.columns where table_schema = 'marts'"
    )

    def section_of(table: str) -> str:
        return "".join(s for s in sections if f"`marts.{table}`" in s.splitlines()[0])

    missing = [
        f"{r.table_name}.{r.column_name}"
        for r in columns.itertuples()
        if f"`{r.column_name}`" not in section_of(r.table_name)
    ]
    assert not missing


def test_tags_reach_the_segments_mart_and_the_tag_rollups(built: BuiltWarehouse) -> None:
    segments = query(built.path, "select account_id, segment_id, tags from marts.segments")
    tags = {(r.account_id, r.segment_id): list(r.tags) for r in segments.itertuples()}
    for key, expected in SEGMENT_TAGS.items():
        assert tags[key] == sorted(t["name"] for t in expected)
    assert tags[("acct_ny", "GapW4")] == []  # no row in the raw table at all
    daily = built.raw["segment_series_daily"]
    lifecycle = daily[daily.segment_id.isin(["EngA1", "VipE3"]) & (daily.account_id == "acct_ny")]
    rollup = query(
        built.path,
        "select date, segments_reporting, total_members, members_removed from marts.segment_growth_by_tag_daily "
        "where tag_id = 'tag-life' order by date",
    )
    expected = lifecycle.groupby("date").agg(n=("segment_id", "size"), total=("total_members", "sum"))
    assert rollup["total_members"].tolist() == expected["total"].tolist()
    assert rollup["segments_reporting"].tolist() == expected["n"].tolist()
    weekly = query(
        built.path,
        "select sum(members_removed) as removed from marts.segment_growth_by_tag_weekly where tag_id = 'tag-life'",
    )
    assert weekly["removed"][0] == lifecycle["members_removed"].sum()


def test_every_row_of_every_mart_names_its_account(built: BuiltWarehouse) -> None:
    marts = query(built.path, "select table_name from information_schema.tables where table_schema = 'marts'")
    assert len(marts) == 8
    for mart in marts["table_name"]:
        names = query(built.path, f"select account_id, account_name, count(*) as n from marts.{mart} group by all")
        assert len(names) and {(r.account_id, r.account_name) for r in names.itertuples()} == {
            (a, account_name(a)) for a in names["account_id"]
        }, mart
    # the old row without a name reads as the default account; the named one keeps its name
    assert {
        (r.account_id, r.account_name)
        for r in query(built.path, "select * from staging.stg_klaviyo__accounts").itertuples()
    } == {
        ("acct_ny", DEFAULT_ACCOUNT_NAME),
        ("acct_tokyo", "tokyo_store"),
    }


def test_the_churn_spike_is_an_anomaly(built: BuiltWarehouse) -> None:
    account_id, segment_id, day = SEGMENT_CHURN_SPIKE
    found = query(
        built.path,
        f"select metric, reason, is_anomaly, robust_z from marts.segment_anomalies "
        f"where account_id = '{account_id}' and segment_id = '{segment_id}' and date = date '{day}'",
    )
    churn = found[found.metric == "churn"].iloc[0]
    assert churn.reason == "churn_spike" and churn.is_anomaly and churn.robust_z > 3.5


def test_publish_and_chart_the_built_warehouse(built: BuiltWarehouse, tmp_path: Path) -> None:
    from segment_pipeline.charts import write_growth_charts
    from segment_pipeline.publish import publish_analytics_copy

    stats = publish_analytics_copy(built.path, tmp_path / "analytics.duckdb")
    assert stats["tables_copied"] == 13  # five raw tables and eight marts
    assert query(Path(stats["path"]), "select count(*) as n from marts.segment_growth_daily")["n"][0] == len(
        built.raw["segment_series_daily"]
    )
    charts = write_growth_charts(stats["path"], tmp_path / "charts", top_n=3)
    assert charts["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    from segment_pipeline.report_packing import read_page

    # the segments travel packed in the page: read them back as its script does
    segments = read_page(charts["html"].read_text())["segments"]
    names = {s["name"] for s in segments}
    assert "Engaged 30d" in names and "Old test segment" not in names

    # the report marks each definition change on its account-local day with the new version's summary
    (vip,) = [s for s in segments if s["id"] == "VipE3"]
    start = dt.date.fromisoformat(vip["start"])
    changes = {start + dt.timedelta(days=index): summary for index, summary in vip["changes"]}
    assert changes == {
        dt.date(2024, 2, 9): "Definition v2: 2 condition(s) in 2 group(s): profile-metric, profile-region",
        dt.date(2024, 3, 5): (
            "Definition v3: 3 condition(s) in 2 group(s): profile-group-membership, profile-metric, profile-region"
        ),
    }
    assert vip["tags"] == ["Lifecycle"]


def test_rollup_member_counts_are_bigint(built: BuiltWarehouse) -> None:
    # DuckDB sums integers into HUGEINT, which pandas (and many BI tools) read as floats
    rollups = ("segment_growth_weekly", "segment_growth_monthly", "segment_growth_by_tag_daily")
    rollups += ("segment_growth_by_tag_weekly",)
    wide = query(
        built.path,
        "select table_name, column_name from information_schema.columns "
        f"where table_schema = 'marts' and data_type = 'HUGEINT' and table_name in {rollups}",
    )
    assert wide.empty, wide.values.tolist()
    for table in rollups:
        frame = query(built.path, f"select members_added, members_removed, net_members_changed from marts.{table}")
        assert not frame.empty and set(frame.dtypes.astype(str)) == {"int64"}, (table, frame.dtypes)
