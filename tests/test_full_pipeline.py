"""The whole pipeline end to end: real Dagster assets, the simulator over HTTP, dlt, dbt, analyst copy, chart.

One module-scoped run loads 25 segments and 75 days (ending yesterday in the account's timezone) through the
code location's assets: the account's segments and series, the dbt models, the analyst copy and the report. Every mart
is then read from the ANALYST COPY and compared with values computed here, in plain Python / pandas, from the
simulator's own truth (`sim.account.series`, `sim.account.segments`), never from the warehouse.

The later tests change the shared state, so they come last and are written to leave every earlier
assertion true: a short partitioned re-run (which must change nothing), definition edits (the expected
values follow them through `Segment.edits` and `Pipeline.definition_changes`) and a full run while an
analyst holds the copy open in another process. The test process only ever opens the analyst copy
(read-only), never the live warehouse.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH
from segment_pipeline.report_packing import read_page
from tests.openapi_contract import load_contract
from tests.simulator_fixtures import contract_problems

from .pipeline_helpers import API_KEY, CHART, COPY, FAST, MODELS, SEGMENTS, SERIES, definitions, keys, range_tags

pytestmark = pytest.mark.timeout(600)

SERIES_NODE = "klaviyo__default__segment_series_daily"
DAILY_MART = dg.AssetKey(["marts", "segment_growth_daily"])

SEGMENT_COUNT = 25  # <= 100: one id batch per report request
DAYS = 75  # two 60-day report windows
SEED = 11

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

DAILY_COLUMNS = [
    "account_id",
    "segment_id",
    "segment_name",
    "date",
    "total_members",
    "members_added",
    "members_removed",
    "net_members_changed",
    "members_at_start",
    "growth_rate",
    "churn_rate",
    "add_rate",
    "days_present_7d",
    "members_at_start_7d",
    "net_change_7d",
    "members_added_7d",
    "members_removed_7d",
    "growth_rate_7d",
    "churn_rate_7d",
    "add_rate_7d",
    "days_present_30d",
    "members_at_start_30d",
    "net_change_30d",
    "members_added_30d",
    "members_removed_30d",
    "growth_rate_30d",
    "churn_rate_30d",
    "add_rate_30d",
    "definition_changed",
    "identity_holds",
]
ROLLUP_COLUMNS = [
    "account_id",
    "segment_id",
    "segment_name",
    "first_date",
    "last_date",
    "days_covered",
    "members_at_start",
    "members_at_end",
    "members_added",
    "members_removed",
    "net_members_changed",
    "growth_rate",
    "churn_rate",
    "add_rate",
]


# ---------------------------------------------------------------------------------------------------------
# the pipeline run shared by the module
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    sim: KlaviyoSimulator
    work: Path
    first: dt.date  # first loaded day
    last: dt.date  # last loaded day: yesterday in the account's timezone
    segments_result: dg.ExecuteInProcessResult | None = None
    range_result: dg.ExecuteInProcessResult | None = None
    # id -> (created, definition) of the simulator's segments when the module's run loaded them
    initial_segments: dict[str, tuple[dt.datetime, dict]] = field(default_factory=dict)
    # (segment id, account-local day) on which a definition edit made by a test took effect
    definition_changes: set[tuple[str, dt.date]] = field(default_factory=set)
    # every dbt command the runs started, with the run's partition key (None for a range or no partitions)
    dbt_calls: list[tuple[str | None, str]] = field(default_factory=list)
    defs: dg.Definitions = field(init=False)

    def __post_init__(self) -> None:
        self.defs = definitions(self.sim, self.work)

    @property
    def analytics(self) -> Path:
        return self.work / "analytics.duckdb"

    @property
    def charts(self) -> Path:
        return self.work / "charts"

    @property
    def account_id(self) -> str:
        return self.sim.account.account_id

    def run(self, names: list[str], **kwargs) -> dg.ExecuteInProcessResult:
        """Materialize the named assets (see pipeline_helpers), with the dbt tests of the models among them."""
        selection = models_with_their_tests(self.defs, names)
        assets = [*self.defs.assets, *(self.defs.asset_checks or [])]
        # an instance of our own, to read the run's logs afterwards (dagster-dbt logs the dbt command there)
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                assets, selection=selection, resources=self.defs.resources, instance=instance, **kwargs
            )
            assert result.success
            for entry in instance.all_logs(result.run_id):
                found = re.search(r"Running dbt command: `(.*)`", entry.user_message or "")
                if found:
                    self.dbt_calls.append((kwargs.get("partition_key"), found.group(1)))
        return result

    def rows(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        """Rows of a query on the analyst copy, as dicts (a short read-only connection)."""
        with duckdb.connect(str(self.analytics), read_only=True) as connection:
            cursor = connection.execute(sql, params or [])
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


def models_with_their_tests(defs: dg.Definitions, names: list[str]) -> dg.AssetSelection:
    """The named assets, and the checks of the dbt models among them (dbt's tests, run by `dbt build`)."""
    chosen = set(keys(names, defs))
    tests = [key for key in defs.get_assets_def(DAILY_MART).check_keys if key.asset_key in chosen]
    return dg.AssetSelection.assets(*chosen).without_checks() | dg.AssetSelection.checks(*tests)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("full_pipeline")
    config = SimulatorConfig(api_key=API_KEY, segment_count=SEGMENT_COUNT, speed=FAST, seed=SEED)
    # the function-scoped make_simulator fixture can't serve a module fixture: start the simulator here (the
    # OpenAPI check it would do at teardown is the last test of this module instead)
    with KlaviyoSimulator(config) as sim:
        last = sim.account.today() - dt.timedelta(days=1)
        run = Pipeline(sim=sim, work=work, first=last - dt.timedelta(days=DAYS - 1), last=last)
        run.initial_segments = {s.id: (s.created, copy.deepcopy(s.definition)) for s in sim.account.segments}
        run.segments_result = run.run([SEGMENTS])
        run.range_result = run.run([SERIES, MODELS, COPY, CHART], tags=range_tags(run.first, run.last))
        yield run


# ---------------------------------------------------------------------------------------------------------
# expected values, from the simulator's truth only
# ---------------------------------------------------------------------------------------------------------


# what dbt's profile reads from --vars; constant for a deployment
PROFILE_VARS = {"warehouse_path", "duckdb_memory_limit"}


def dbt_vars(command: str) -> dict | None:
    """The --vars a dbt command was given, or None."""
    found = re.search(r"--vars (\{.*?\})", command)
    return json.loads(found.group(1)) if found else None


def rate(numerator: int, denominator: int | None) -> float | None:
    """The marts' rate: a fraction, None (NULL) when the base is missing or not positive."""
    if denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def truth_frame(pipeline: Pipeline) -> pd.DataFrame:
    """One row per live segment and loaded day, straight from the simulator."""
    records = []
    for segment in pipeline.sim.account.segments:
        for row in pipeline.sim.account.series(segment.id, pipeline.first, pipeline.last):
            records.append({"segment_id": segment.id, "segment_name": segment.name, **row})
    frame = pd.DataFrame.from_records(records)
    frame["members_at_start"] = frame["total_members"] - frame["net_members_changed"]
    return frame


def expected_daily(pipeline: Pipeline) -> dict[tuple, dict[str, Any]]:
    """marts.segment_growth_daily per the column definitions in _marts__models.yml.

    Only [first, last] is loaded, so a window reaching before `first` is incomplete: the first 6 (30-day: 29)
    days of the range have fewer days present and NULL window starts, sums and rates.
    """
    expected = {}
    account_id = pipeline.account_id
    for segment in pipeline.sim.account.segments:
        series = pipeline.sim.account.series(segment.id, pipeline.first, pipeline.last)
        by_day = {row["date"]: row for row in series}
        for row in series:
            day = row["date"]
            start = row["total_members"] - row["net_members_changed"]
            out = {
                "account_id": account_id,
                "segment_id": segment.id,
                "segment_name": segment.name,
                "date": day,
                "total_members": row["total_members"],
                "members_added": row["members_added"],
                "members_removed": row["members_removed"],
                "net_members_changed": row["net_members_changed"],
                "members_at_start": start,
                "growth_rate": rate(row["net_members_changed"], start),
                "churn_rate": rate(row["members_removed"], start),
                "add_rate": rate(row["members_added"], start),
            }
            for length in (7, 30):
                window = [day - dt.timedelta(days=back) for back in range(length)]
                present = [by_day[d] for d in window if d in by_day]
                oldest = by_day.get(window[-1])
                # start and sums only for a complete window: all `length` days present
                complete = len(present) == length
                window_start = oldest["total_members"] - oldest["net_members_changed"] if complete else None
                net = sum(p["net_members_changed"] for p in present) if complete else None
                added = sum(p["members_added"] for p in present) if complete else None
                removed = sum(p["members_removed"] for p in present) if complete else None
                out |= {
                    f"days_present_{length}d": len(present),
                    f"members_at_start_{length}d": window_start,
                    f"net_change_{length}d": net,
                    f"members_added_{length}d": added,
                    f"members_removed_{length}d": removed,
                    f"growth_rate_{length}d": rate(net, window_start),
                    f"churn_rate_{length}d": rate(removed, window_start),
                    f"add_rate_{length}d": rate(added, window_start),
                }
            previous = by_day.get(day - dt.timedelta(days=1))
            # the account starts with one version per segment; a later test edits definitions
            out["definition_changed"] = (segment.id, day) in pipeline.definition_changes
            out["identity_holds"] = row["net_members_changed"] == row["members_added"] - row["members_removed"] and (
                previous is None or row["total_members"] == previous["total_members"] + row["net_members_changed"]
            )
            expected[(account_id, segment.id, day)] = out
    return expected


def expected_rollup(pipeline: Pipeline, period_column: str) -> dict[tuple, dict[str, Any]]:
    """The weekly (ISO, Monday) or monthly roll-up of the truth, aggregated with pandas."""
    frame = truth_frame(pipeline).sort_values(["segment_id", "date"])
    dates = pd.to_datetime(frame["date"])
    if period_column == "week_start":
        frame[period_column] = (dates - pd.to_timedelta(dates.dt.weekday, unit="D")).dt.date
    else:
        frame[period_column] = dates.dt.to_period("M").dt.start_time.dt.date
    grouped = frame.groupby(["segment_id", period_column], sort=True).agg(
        segment_name=("segment_name", "last"),
        first_date=("date", "min"),
        last_date=("date", "max"),
        days_covered=("date", "size"),
        members_at_start=("members_at_start", "first"),  # stocks: first and last day present, never summed
        members_at_end=("total_members", "last"),
        members_added=("members_added", "sum"),
        members_removed=("members_removed", "sum"),
        net_members_changed=("net_members_changed", "sum"),
    )
    expected = {}
    for (segment_id, period), row in grouped.iterrows():
        start = int(row["members_at_start"])
        out = {
            "account_id": pipeline.account_id,
            "segment_id": segment_id,
            "segment_name": row["segment_name"],
            period_column: period,
            "first_date": row["first_date"],
            "last_date": row["last_date"],
            "days_covered": int(row["days_covered"]),
            "members_at_start": start,
            "members_at_end": int(row["members_at_end"]),
            "members_added": int(row["members_added"]),
            "members_removed": int(row["members_removed"]),
            "net_members_changed": int(row["net_members_changed"]),
        }
        out |= {
            "growth_rate": rate(out["net_members_changed"], start),
            "churn_rate": rate(out["members_removed"], start),
            "add_rate": rate(out["members_added"], start),
        }
        expected[(pipeline.account_id, segment_id, period)] = out
    return expected


def definition_summary(definition: dict) -> dict[str, Any]:
    """What marts.segments says about a definition, per its column descriptions."""
    conditions = [c for group in definition.get("condition_groups", []) for c in group.get("conditions", [])]
    types = sorted({c["type"] for c in conditions})
    return {
        "condition_group_count": len(definition.get("condition_groups", [])),
        "condition_count": len(conditions),
        "condition_types": types,
        "condition_types_text": ", ".join(types),
        "list_ids": sorted({g for c in conditions for g in c.get("group_ids") or []}),
        "metric_ids": sorted(
            {c["metric_id"] for c in conditions if c.get("metric_id") is not None}
            | {step["metric_id"] for c in conditions for step in c.get("steps") or []}
        ),
    }


# ---------------------------------------------------------------------------------------------------------
# comparing
# ---------------------------------------------------------------------------------------------------------


def same_value(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, float) or isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=0.0)
    return actual == expected


def assert_rows_match(actual: list[dict], expected: dict[tuple, dict], keys: tuple[str, ...], what: str) -> None:
    by_key = {tuple(row[k] for k in keys): row for row in actual}
    assert len(by_key) == len(actual), f"{what}: duplicated keys"
    missing, extra = sorted(set(expected) - set(by_key)), sorted(set(by_key) - set(expected))
    assert not missing and not extra, (
        f"{what}: missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})"
    )
    columns = set(next(iter(expected.values())))
    assert set(actual[0]) == columns, f"{what}: columns differ: {set(actual[0]) ^ columns}"
    problems = [
        f"{key} {column}: mart {by_key[key][column]!r} != expected {want[column]!r}"
        for key, want in sorted(expected.items())
        for column in sorted(columns)
        if not same_value(by_key[key][column], want[column])
    ]
    assert not problems, f"{what}: {len(problems)} values differ, e.g.\n" + "\n".join(problems[:25])


# ---------------------------------------------------------------------------------------------------------
# the marts against the truth
# ---------------------------------------------------------------------------------------------------------


def test_daily_mart_in_the_analyst_copy_equals_the_simulators_truth(pipeline: Pipeline) -> None:
    expected = expected_daily(pipeline)
    actual = pipeline.rows(f"select {', '.join(DAILY_COLUMNS)} from marts.segment_growth_daily")
    assert len(actual) == SEGMENT_COUNT * DAYS
    assert_rows_match(actual, expected, ("account_id", "segment_id", "date"), "marts.segment_growth_daily")


def test_the_data_includes_days_that_start_empty_and_their_rates_are_null(pipeline: Pipeline) -> None:
    # a "recent" segment was created inside the loaded range: empty before, and empty at the start of its
    # creation day. The comparison above is only meaningful for NULL rates if such rows exist.
    empty_starts = pipeline.rows(
        "select segment_id, date, growth_rate, churn_rate, add_rate, total_members "
        "from marts.segment_growth_daily where members_at_start = 0"
    )
    truth = truth_frame(pipeline)
    assert len(empty_starts) == int((truth["members_at_start"] == 0).sum()) > 0
    assert all(r["growth_rate"] is None and r["churn_rate"] is None and r["add_rate"] is None for r in empty_starts)
    # the creation day itself: starts at 0, ends with members
    assert any(r["total_members"] > 0 for r in empty_starts)


def test_rolling_windows_are_null_until_complete_and_exact_after(pipeline: Pipeline) -> None:
    rows = pipeline.rows(
        "select date, days_present_7d, members_at_start_7d, net_change_7d, members_added_7d, members_removed_7d, "
        "days_present_30d, members_at_start_30d, net_change_30d, members_added_30d, members_removed_30d "
        "from marts.segment_growth_daily"
    )
    for row in rows:
        age = (row["date"] - pipeline.first).days  # 0 on the first loaded day
        assert row["days_present_7d"] == min(7, age + 1)
        assert row["days_present_30d"] == min(30, age + 1)
        for length, complete_from in ((7, 6), (30, 29)):
            for column in ("members_at_start", "net_change", "members_added", "members_removed"):
                assert (row[f"{column}_{length}d"] is None) == (age < complete_from), (column, length, row)


def test_every_day_satisfies_klaviyos_identities(pipeline: Pipeline) -> None:
    assert pipeline.rows("select count(*) as n from marts.segment_growth_daily where identity_holds is not true") == [
        {"n": 0}
    ]


@pytest.mark.parametrize(
    ("table", "period_column"),
    [("marts.segment_growth_weekly", "week_start"), ("marts.segment_growth_monthly", "month_start")],
)
def test_rollups_equal_a_pandas_aggregation_of_the_truth(pipeline: Pipeline, table: str, period_column: str) -> None:
    expected = expected_rollup(pipeline, period_column)
    columns = [*ROLLUP_COLUMNS, period_column]
    actual = pipeline.rows(f"select {', '.join(columns)} from {table}")
    assert_rows_match(actual, expected, ("account_id", "segment_id", period_column), table)


def test_weeks_start_on_monday(pipeline: Pipeline) -> None:
    weeks = pipeline.rows("select distinct week_start from marts.segment_growth_weekly")
    assert weeks and all(r["week_start"].isoweekday() == 1 for r in weeks)


def test_segments_mart_lists_every_live_segment_with_a_faithful_definition_summary(pipeline: Pipeline) -> None:
    rows = {r["segment_id"]: r for r in pipeline.rows("select * from marts.segments")}
    live = pipeline.sim.account.segments
    assert set(rows) == {s.id for s in live}
    for segment in live:
        row = rows[segment.id]
        assert row["account_id"] == pipeline.account_id
        assert row["segment_name"] == segment.name
        assert (row["is_active"], row["is_processing"], row["is_starred"], row["is_deleted"]) == (
            segment.is_active,
            segment.is_processing,
            segment.is_starred,
            False,
        )
        assert row["created_at"] == segment.created and row["updated_at"] == segment.updated
        assert json.loads(row["definition"]) == segment.definition
        summary = {k: row[k] for k in definition_summary(segment.definition)}
        assert summary == definition_summary(segment.definition), segment.id
        # a later test of this module edits one definition (and publishes again): follow the simulator
        assert row["definition_version_count"] == 1 + segment.edits
        last_total = pipeline.sim.account.series(segment.id, pipeline.last, pipeline.last)[0]["total_members"]
        assert (row["latest_date"], row["latest_total_members"]) == (pipeline.last, last_total)
    # the summaries are not trivially empty: the first segments cover every condition type
    all_types = {t for r in rows.values() for t in r["condition_types"]}
    assert {"profile-metric", "profile-group-membership", "profile-property"} <= all_types
    assert any(r["condition_group_count"] > 1 for r in rows.values())
    assert any(r["metric_ids"] for r in rows.values()) and any(r["list_ids"] for r in rows.values())


def test_the_initial_history_has_one_open_version_per_segment(pipeline: Pipeline) -> None:
    rows = pipeline.rows(
        "select segment_id, version_number, valid_from, valid_to, is_current, definition "
        "from marts.segment_definition_history where version_number = 1"
    )
    initial = pipeline.initial_segments
    assert {r["segment_id"] for r in rows} == set(initial)
    for row in rows:
        created, definition = initial[row["segment_id"]]
        # version 1 has applied since the segment was created
        assert row["valid_from"] == created
        assert json.loads(row["definition"]) == definition


# ---------------------------------------------------------------------------------------------------------
# what the Dagster run reports
# ---------------------------------------------------------------------------------------------------------


def test_the_range_run_sent_the_fewest_report_requests(pipeline: Pipeline) -> None:
    materializations = pipeline.range_result.asset_materializations_for_node(SERIES_NODE)
    # one materialization per day, each with that day's rows, and the run's own numbers on each
    days = [pipeline.first + dt.timedelta(days=i) for i in range(DAYS)]
    assert sorted(m.partition for m in materializations) == [day.isoformat() for day in days]
    for materialization in materializations:
        metadata = materialization.metadata
        assert metadata["rows_written"].value == metadata["dagster/row_count"].value == SEGMENT_COUNT
        # ceil(25 / 100) id batches x ceil(75 / 60) windows; the range ends yesterday, so the lookback is inside it
        assert metadata["run_report_requests_sent"].value == 2
        assert metadata["run_first_day"].value == pipeline.first.isoformat()
        assert metadata["run_last_day"].value == pipeline.last.isoformat()


def test_dbt_tests_surface_as_asset_checks_and_pass(pipeline: Pipeline) -> None:
    evaluations = pipeline.range_result.get_asset_check_evaluations()
    assert evaluations
    evaluated = {(e.asset_key, e.check_name) for e in evaluations}
    # every test dagster-dbt declared as a check of the models ran in the build
    declared = {(spec.asset_key, spec.name) for spec in pipeline.defs.get_assets_def(DAILY_MART).check_specs}
    assert declared and declared <= evaluated, sorted(declared - evaluated)[:10]
    daily_checks = {name for key, name in evaluated if key.path[-1] == "segment_growth_daily"}
    assert any(name.startswith("unique_combination_of_columns") for name in daily_checks), daily_checks
    failed_errors = [
        (e.asset_key.to_user_string(), e.check_name)
        for e in evaluations
        if e.severity == dg.AssetCheckSeverity.ERROR and not e.passed
    ]
    assert failed_errors == []
    # the simulator's numbers are consistent, so not even a warn-level test fires
    assert [e.check_name for e in evaluations if not e.passed] == []


def test_growth_chart_files_are_a_png_and_a_self_contained_page(pipeline: Pipeline) -> None:
    png, page = pipeline.charts / "segment_growth.png", pipeline.charts / "segment_growth.html"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    text = page.read_text(encoding="utf-8")
    # Plotly is embedded whole; nothing is loaded from elsewhere (the browser test checks no request is made)
    assert not re.search(r"<script[^>]*\bsrc\b", text, re.IGNORECASE)
    assert not re.search(r"<link\b|@import", text, re.IGNORECASE)
    metadata = pipeline.range_result.asset_materializations_for_node("analytics__growth_chart")[0].metadata
    assert Path(metadata["png"].value) == png.resolve() and Path(metadata["html"].value) == page.resolve()
    # the UI shows the chart itself: a small PNG inline as Markdown
    assert metadata["chart"].value.startswith("![") and "(data:image/png;base64,iVBORw0KGgo" in metadata["chart"].value
    assert len(metadata["chart"].value) < 120_000

    # the report lists every live segment, the largest by its latest size first
    def latest_total(segment) -> int:
        return pipeline.sim.account.series(segment.id, pipeline.last, pipeline.last)[0]["total_members"]

    largest = max(pipeline.sim.account.segments, key=latest_total)
    embedded = read_page(text)["segments"]
    assert embedded[0]["key"] == f"{pipeline.account_id}/{largest.id}"
    assert {s["id"] for s in embedded} == {segment.id for segment in pipeline.sim.account.segments}


# ---------------------------------------------------------------------------------------------------------
# runs that change the shared state: each leaves the assertions above true
# ---------------------------------------------------------------------------------------------------------


def daily_snapshot(pipeline: Pipeline) -> list[tuple]:
    with duckdb.connect(str(pipeline.analytics), read_only=True) as connection:
        return connection.execute(
            f"select {', '.join(DAILY_COLUMNS)} from marts.segment_growth_daily order by account_id, segment_id, date"
        ).fetchall()


def test_a_partitioned_rerun_of_three_days_leaves_the_daily_mart_identical(pipeline: Pipeline) -> None:
    before = daily_snapshot(pipeline)
    # mid-range: the re-pulled days have the same numbers, so nothing changes
    first = pipeline.last - dt.timedelta(days=20)
    last = first + dt.timedelta(days=2)
    reports_before, calls_before = pipeline.sim.count(path=SEGMENT_SERIES_PATH), len(pipeline.dbt_calls)
    pipeline.run([SERIES, MODELS, COPY], tags=range_tags(first, last))
    # those days were fetched when already older than the lookback: they are final, nothing is asked again
    assert pipeline.sim.count(path=SEGMENT_SERIES_PATH) == reports_before
    # the three days build the models once (a single-run backfill policy), not once a day
    assert len(pipeline.dbt_calls[calls_before:]) == 1
    # and dbt is never told about a run's days (only the warehouse, as every run): the mart finds what changed
    assert pipeline.dbt_calls and all(set(dbt_vars(command)) == PROFILE_VARS for _, command in pipeline.dbt_calls)
    after = daily_snapshot(pipeline)
    assert len(after) == len(before) == SEGMENT_COUNT * DAYS
    assert pipeline.rows(
        "select count(*) as n from (select distinct account_id, segment_id, date from marts.segment_growth_daily)"
    ) == [{"n": SEGMENT_COUNT * DAYS}]
    assert after == before


def test_definition_edits_add_a_version_dated_in_the_account_timezone(pipeline: Pipeline) -> None:
    sim = pipeline.sim
    # two segments whose last update is more than a day old, so an edit "yesterday" still moves `updated` on
    day_ago = sim.account.now() - dt.timedelta(days=1, minutes=5)
    edited_yesterday, edited_today = [s for s in sim.account.segments if s.edits == 0 and s.updated < day_ago][:2]
    old_definitions = {s.id: copy.deepcopy(s.definition) for s in (edited_yesterday, edited_today)}
    # an edit made yesterday (account-local), seen by today's run, as with the 06:00 daily run: the
    # simulator stamps `updated` with its own "now", so move its today back for that one edit
    sim.account.set_today(pipeline.last)
    try:
        sim.account.edit_definition(edited_yesterday.id)
    finally:
        sim.account.set_today(None)
    sim.account.edit_definition(edited_today.id)  # and one made just now, on a day with no partition yet
    edits = {s.id: sim.account.segment(s.id).updated for s in (edited_yesterday, edited_today)}
    edit_days = {segment_id: moment.astimezone(sim.account.zone).date() for segment_id, moment in edits.items()}
    assert edit_days == {edited_yesterday.id: pipeline.last, edited_today.id: sim.account.today()}
    pipeline.definition_changes.add((edited_yesterday.id, pipeline.last))

    pipeline.run([SEGMENTS])
    # the shared build after the daily run
    pipeline.run([MODELS, COPY])

    for segment in (edited_yesterday, edited_today):
        history = pipeline.rows(
            "select version_number, definition, valid_from, valid_to, is_current, first_seen_at "
            "from marts.segment_definition_history where segment_id = ? order by version_number",
            [segment.id],
        )
        assert [r["version_number"] for r in history] == [1, 2]
        first, second = history
        assert json.loads(first["definition"]) == old_definitions[segment.id]
        assert json.loads(second["definition"]) == sim.account.segment(segment.id).definition
        assert first["valid_from"] == segment.created
        # the versions tile time: the second starts exactly where the first ends, at the edit
        assert first["valid_to"] == second["valid_from"] == edits[segment.id]
        assert second["valid_to"] is None
        assert (first["is_current"], second["is_current"]) == (False, True)
        assert second["first_seen_at"] > first["first_seen_at"]
        summary = pipeline.rows("select * from marts.segments where segment_id = ?", [segment.id])[0]
        assert summary["definition_version_count"] == 2
        new_summary = definition_summary(sim.account.segment(segment.id).definition)
        assert {k: summary[k] for k in new_summary} == new_summary
    # every other segment still has exactly one, open, version
    others = pipeline.rows(
        "select segment_id, count(*) as versions, bool_and(valid_to is null) as open "
        "from marts.segment_definition_history group by segment_id"
    )
    assert len(others) == SEGMENT_COUNT
    assert all(r["versions"] == 1 and r["open"] for r in others if r["segment_id"] not in edits)

    # each change is dated on its account-local day; only yesterday's has a daily row to flag
    changes = pipeline.rows(
        "select segment_id, date, last_version_number from intermediate.int_segment_definition_changes_daily"
    )
    assert sorted((r["segment_id"], r["date"], r["last_version_number"]) for r in changes) == sorted(
        (segment_id, day, 2) for segment_id, day in edit_days.items()
    )
    flagged = pipeline.rows("select segment_id, date from marts.segment_growth_daily where definition_changed")
    assert [(r["segment_id"], r["date"]) for r in flagged] == [(edited_yesterday.id, pipeline.last)]
    # and the rest of the daily mart is still the truth
    assert_rows_match(
        pipeline.rows(f"select {', '.join(DAILY_COLUMNS)} from marts.segment_growth_daily"),
        expected_daily(pipeline),
        ("account_id", "segment_id", "date"),
        "marts.segment_growth_daily",
    )


READER = textwrap.dedent(
    """
    import json, sys, duckdb
    connection = duckdb.connect(sys.argv[1], read_only=True)
    print("ready", flush=True)
    for sql in sys.stdin:
        try:
            print(json.dumps({"rows": connection.execute(sql).fetchall()}, default=str), flush=True)
        except Exception as exc:
            print(json.dumps({"error": repr(exc)}), flush=True)
    """
)


class AnalystSession:
    """An analyst's read-only DuckDB session on the copy, held open in another process (locks are per process)."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", READER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready", self.process.stderr.read()

    def query(self, sql: str) -> list:
        self.process.stdin.write(sql.replace("\n", " ") + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert "error" not in answer, answer["error"]
        return answer["rows"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


LOADED_SQL = "select epoch_us(max(_loaded_at)), (select count(*) from marts.segment_growth_daily) from klaviyo.accounts"


def test_a_full_run_succeeds_while_an_analyst_holds_the_copy_open(pipeline: Pipeline) -> None:
    analyst = AnalystSession(pipeline.analytics)
    try:
        before = analyst.query(LOADED_SQL)
        result = pipeline.run(
            [SEGMENTS, SERIES, MODELS, COPY, CHART],
            partition_key=pipeline.last.isoformat(),
        )
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        published = {dg.AssetKey(["analytics", "warehouse_copy"]), dg.AssetKey(["analytics", "growth_chart"])}
        assert published <= materialized
        # the open session still answers, from the version it opened
        assert analyst.query(LOADED_SQL) == before
    finally:
        analyst.close()
    assert analyst.process.returncode == 0
    # a new session sees the new version: a later load, and still every day exactly once
    with duckdb.connect(str(pipeline.analytics), read_only=True) as connection:
        fresh = [list(connection.execute(LOADED_SQL).fetchone())]
    assert fresh[0][0] > before[0][0]
    assert fresh[0][1] == before[0][1] == SEGMENT_COUNT * DAYS
    assert not [p.name for p in pipeline.analytics.parent.iterdir() if p.name.endswith(".tmp")]


def test_no_run_passes_days_to_dbt(pipeline: Pipeline) -> None:
    # the single-partition runs above (the edit test, the full run) are the daily schedule's shape; whatever
    # the run, dbt gets the same --vars (the profile's warehouse and memory limit, no days), so its partial
    # parsing stays valid from run to run
    if not any(key is not None for key, _ in pipeline.dbt_calls):
        pipeline.run([MODELS])
    assert pipeline.dbt_calls
    first = dbt_vars(pipeline.dbt_calls[0][1])
    assert set(first) == PROFILE_VARS and first["warehouse_path"] == str((pipeline.work / "warehouse.duckdb").resolve())
    for _, command in pipeline.dbt_calls:
        assert dbt_vars(command) == first and "--full-refresh" not in command, command


# ---------------------------------------------------------------------------------------------------------
# last: the traffic of all of the above
# ---------------------------------------------------------------------------------------------------------


def test_every_exchange_with_the_simulator_followed_klaviyos_openapi_document(pipeline: Pipeline) -> None:
    contract = load_contract()
    if contract is None:
        pytest.skip("Klaviyo's OpenAPI document is not available")
    assert contract_problems(pipeline.sim, contract) == []
    assert pipeline.sim.count(status=429) == 0
