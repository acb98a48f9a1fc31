"""Tags, reconciliation with Klaviyo and anomalies, end to end: real assets and checks, the simulator over HTTP,
dlt, dbt and the analyst copy. Expected values come from the simulator's own truth, computed here.

One module-scoped run loads 20 segments and 45 days (one report request) with the two new checks. The tests
that change state (a tampered row, a tag taken off) come last and put things back or only add.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pandas as pd
import pytest
import time_machine

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from segment_pipeline import reconciliation as rc
from segment_pipeline.defs.quality.reconciliation import check_result
from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.klaviyo import DayWindow
from segment_pipeline.klaviyo.limits import SEGMENT_VALUES_PATH
from segment_pipeline.report_packing import read_page
from segment_pipeline.warehouse import Holder, Warehouse
from tests.simulator_fixtures import contract_problems

from . import pipeline_helpers as pipeline
from .pipeline_helpers import API_KEY, FAST, definitions, materialize, query, range_tags, settings

SEGMENTS_NODE = "klaviyo_default_segments"
SERIES_NODE = "klaviyo__default__segment_series_daily"

pytestmark = pytest.mark.timeout(600)

SEGMENTS = 20
DAYS = 45
SEED = 5
# the anomaly mart's documented thresholds (dbt vars' defaults)
Z_THRESHOLD, MIN_DEVIATION, BASELINE_DAYS, MIN_BASELINE_DAYS = 3.5, 10, 28, 14


@dataclass
class Run:
    sim: KlaviyoSimulator
    work: Path
    first: dt.date
    last: dt.date
    result: dg.ExecuteInProcessResult

    @property
    def warehouse(self) -> Path:
        return self.work / "warehouse.duckdb"

    @property
    def analytics(self) -> Path:
        return self.work / "analytics.duckdb"

    def frame(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.analytics), read_only=True) as connection:
            return connection.execute(sql).df()

    def check(self, name: str) -> dg.AssetCheckEvaluation:
        (evaluation,) = [e for e in self.result.get_asset_check_evaluations() if e.check_name == name]
        return evaluation


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("growth_insights")
    config = SimulatorConfig(api_key=API_KEY, segment_count=SEGMENTS, speed=FAST, seed=SEED)
    with KlaviyoSimulator(config) as sim:
        last = sim.account.today() - dt.timedelta(days=1)
        first = last - dt.timedelta(days=DAYS - 1)
        defs = definitions(sim, work)
        materialize([pipeline.SEGMENTS], sim, work, defs=defs)
        # with their checks: the reconciliation check on the series, the anomaly check on the anomaly mart
        everything = [pipeline.SERIES, pipeline.MODELS, pipeline.COPY, pipeline.CHART]
        result = materialize(everything, sim, work, defs=defs, checks=True, tags=range_tags(first, last))
        assert result.success
        yield Run(sim, work, first, last, result)


# ---------------------------------------------------------------------------------------------------------
# tags
# ---------------------------------------------------------------------------------------------------------


def test_raw_tags_are_each_segments_tags_as_the_simulator_serves_them(run: Run) -> None:
    stored = dict(query(run.warehouse, "select segment_id, tags::varchar from klaviyo.segment_tags"))
    assert len(stored) == SEGMENTS
    for segment in run.sim.account.segments:
        expected = sorted((t.name, t.id) for t in segment.tags)
        rows = query(
            run.warehouse,
            "select t.name, t.id from klaviyo.segment_tags, unnest(json_transform(tags, "
            '\'[{"id": "VARCHAR", "name": "VARCHAR"}]\')) as u(t) where segment_id = ?',
            [segment.id],
        )
        assert sorted(rows) == expected, segment.id
    assert any(segment.tags for segment in run.sim.account.segments)
    assert any(not segment.tags for segment in run.sim.account.segments)


def test_segments_mart_lists_tag_names_sorted(run: Run) -> None:
    marts = run.frame("select segment_id, tags from marts.segments")
    tags = {r.segment_id: list(r.tags) for r in marts.itertuples()}
    for segment in run.sim.account.segments:
        assert tags[segment.id] == sorted(t.name for t in segment.tags)


def test_growth_by_tag_sums_the_tagged_segments_truth(run: Run) -> None:
    truth = []
    for segment in run.sim.account.segments:
        for row in run.sim.account.series(segment.id, run.first, run.last):
            for tag in segment.tags:
                truth.append({"tag_id": tag.id, "tag_name": tag.name, **row})
    frame = pd.DataFrame(truth)
    frame["members_at_start"] = frame["total_members"] - frame["net_members_changed"]
    expected = frame.groupby(["tag_id", "date"]).agg(
        segments_reporting=("total_members", "size"),
        total_members=("total_members", "sum"),
        members_added=("members_added", "sum"),
        members_removed=("members_removed", "sum"),
        members_at_start=("members_at_start", "sum"),
    )
    actual = run.frame(
        "select tag_id, date, segments_reporting, total_members, members_added, members_removed, members_at_start "
        "from marts.segment_growth_by_tag_daily"
    )
    actual["date"] = pd.to_datetime(actual["date"]).dt.date
    actual = actual.set_index(["tag_id", "date"]).sort_index().astype("int64")
    pd.testing.assert_frame_equal(actual, expected.sort_index().astype("int64"))

    weekly = run.frame("select tag_id, sum(members_added) as added from marts.segment_growth_by_tag_weekly group by 1")
    assert dict(zip(weekly.tag_id, weekly.added)) == frame.groupby("tag_id")["members_added"].sum().to_dict()


# ---------------------------------------------------------------------------------------------------------
# anomalies: the mart against a robust z-score computed here from the truth
# ---------------------------------------------------------------------------------------------------------


def expected_anomalies(run: Run) -> dict[tuple[str, dt.date, str], float]:
    expected = {}
    for segment in run.sim.account.segments:
        rows = {r["date"]: r for r in run.sim.account.series(segment.id, run.first, run.last)}
        for day, row in rows.items():
            previous = [rows[d] for d in (day - dt.timedelta(days=k) for k in range(1, BASELINE_DAYS + 1)) if d in rows]
            populated = sum(1 for r in previous if r["total_members"] - r["net_members_changed"] > 0)
            if populated < MIN_BASELINE_DAYS:
                continue  # a new segment still filling its history, or too little history loaded
            for metric, column in (("churn", "members_removed"), ("net_change", "net_members_changed")):
                values = [r[column] for r in previous]
                median = statistics.median(values)
                mad = statistics.median(abs(v - median) for v in values)
                deviation = row[column] - median
                z = 0.6745 * deviation / max(mad, 1)
                if abs(z) >= Z_THRESHOLD and abs(deviation) >= MIN_DEVIATION:
                    expected[(segment.id, day, metric)] = z
    return expected


def test_anomaly_mart_flags_exactly_the_days_a_robust_z_score_flags(run: Run) -> None:
    mart = run.frame("select segment_id, date, metric, robust_z, is_anomaly, reason from marts.segment_anomalies")
    actual = {(r.segment_id, pd.Timestamp(r.date).date(), r.metric): r.robust_z for r in mart.itertuples()}
    expected = expected_anomalies(run)
    assert expected, "the simulated account should have days that stand out"
    assert actual.keys() == expected.keys()
    for key, z in expected.items():
        assert actual[key] == pytest.approx(z, rel=1e-9)
    assert mart["is_anomaly"].all()  # no definition changed in this run


def test_a_new_segments_first_days_are_never_flagged(run: Run) -> None:
    recent = [s for s in run.sim.account.segments if s.kind == "recent" and s.created.date() > run.first]
    assert recent, "the account should have a segment created inside the loaded range"
    flagged = run.frame("select segment_id, date from marts.segment_anomalies")
    for segment in recent:
        days = {pd.Timestamp(d).date() for d in flagged[flagged.segment_id == segment.id]["date"]}
        too_early = {d for d in days if (d - segment.created.date()).days < MIN_BASELINE_DAYS}
        assert not too_early, (segment.id, too_early)


def test_the_anomaly_check_warns_about_the_newest_day(run: Run) -> None:
    evaluation = run.check("no_anomalies_on_the_newest_day")
    newest = {key for key in expected_anomalies(run) if key[1] == run.last}
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.passed == (not newest)
    assert evaluation.metadata["anomalies"].value == len(newest)


def test_the_report_embeds_the_anomalies(run: Run) -> None:
    page = (run.work / "charts" / "segment_growth.html").read_text(encoding="utf-8")
    segments = {s["id"]: s for s in read_page(page)["segments"]}
    embedded = set()
    for segment_id, segment in segments.items():
        start = dt.date.fromisoformat(segment["start"])
        embedded |= {(segment_id, start + dt.timedelta(days=a[0]), a[1]) for a in segment["anomalies"]}
    assert embedded == set(expected_anomalies(run))


# ---------------------------------------------------------------------------------------------------------
# reconciliation with Klaviyo's values report
# ---------------------------------------------------------------------------------------------------------


def test_reconciliation_passes_on_consistent_data_and_counts_its_request(run: Run) -> None:
    evaluation = run.check("series_reconciles_with_klaviyo")
    assert evaluation.passed, evaluation.description
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert metadata["segments_compared"] == SEGMENTS
    assert metadata["last_day"] == run.last.isoformat()
    assert metadata["report_requests_planned"] == metadata["report_requests_sent"] == 1
    assert run.sim.count(method="POST", path=SEGMENT_VALUES_PATH) == 1
    series_metadata = run.result.asset_materializations_for_node(SERIES_NODE)[0].metadata
    assert series_metadata["run_reconciliation_requests_reserved"].value == 1


def test_the_reconciled_window_never_reaches_before_the_first_loaded_day(run: Run) -> None:
    account_id = run.sim.account.account_id
    assert rc.latest_window(run.warehouse, account_id, 7, run.last) == DayWindow(
        run.last - dt.timedelta(days=6), run.last
    )
    assert rc.latest_window(run.warehouse, account_id, 365, run.last) == DayWindow(run.first, run.last)
    assert rc.latest_window(run.warehouse, "no-such-account", 7, run.last) is None


def invoke_check(run: Run, **env: str) -> dg.AssetCheckResult:
    """The check's body, called directly with the services its run would hand it."""
    deployment = settings(run.sim, run.work, **env)
    access = KlaviyoAccess(deployment, deployment.accounts["default"])
    return check_result(rc.reconcile_account(access, Warehouse(deployment.storage), Holder(step="test")))


def test_reconciliation_can_be_turned_off(run: Run) -> None:
    before = run.sim.count(path=SEGMENT_VALUES_PATH)
    result = invoke_check(run, KLAVIYO_RECONCILE_DAYS="0")
    assert result.passed and result.metadata["enabled"].value is False
    assert run.sim.count(path=SEGMENT_VALUES_PATH) == before


def test_reconciliation_fails_on_a_tampered_row_naming_the_segment(run: Run) -> None:
    segment = run.sim.account.segments[3]
    with duckdb.connect(str(run.warehouse)) as connection:
        connection.execute(
            "update klaviyo.segment_series_daily set members_removed = members_removed + 7 "
            "where segment_id = ? and date = ?",
            [segment.id, run.last - dt.timedelta(days=2)],
        )
    try:
        result = invoke_check(run)
    finally:
        with duckdb.connect(str(run.warehouse)) as connection:
            connection.execute(
                "update klaviyo.segment_series_daily set members_removed = members_removed - 7 "
                "where segment_id = ? and date = ?",
                [segment.id, run.last - dt.timedelta(days=2)],
            )
    assert not result.passed
    assert result.metadata["segments_disagreeing"].value == 1
    assert result.description.startswith("1 segment disagrees with Klaviyo's values report for ")
    assert segment.id in result.description and "members_removed" in result.description
    assert "difference +7" in result.description
    assert "members_removed" in result.metadata["mismatches"].value
    assert invoke_check(run).passed  # put back: agrees again


def test_a_budget_spent_by_the_series_fails_only_the_check_and_says_the_series_is_loaded(
    make_simulator, tmp_path
) -> None:
    sim = make_simulator(api_key=API_KEY, segment_count=4, speed=FAST, seed=SEED)
    # room for the series' one request, none for the check's
    defs = definitions(sim, tmp_path, KLAVIYO_REPORT_DAILY_LIMIT="1")
    last = sim.account.today() - dt.timedelta(days=1)
    materialize([pipeline.SEGMENTS], sim, tmp_path, defs=defs)
    result = materialize(
        [pipeline.SERIES],
        sim,
        tmp_path,
        defs=defs,
        checks=True,
        tags=range_tags(last - dt.timedelta(days=9), last),
        raise_on_error=False,
    )
    assert result.asset_materializations_for_node(SERIES_NODE)
    (loaded,) = query(tmp_path / "warehouse.duckdb", "select count(*) from klaviyo.segment_series_daily")
    assert loaded == (4 * 10,)
    assert sim.count(method="POST", path=SEGMENT_VALUES_PATH) == 0
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    # true to what happened: the series was sent and loaded, only the check's request was not
    assert "Nothing was sent" not in message and "this run needs" not in message
    assert "the reconciliation check (the series is loaded" in message, message
    assert "needs 1 report request but only 0 are left" in message and "That request was not sent" in message


# ---------------------------------------------------------------------------------------------------------
# tag changes and keys without tags:read
# ---------------------------------------------------------------------------------------------------------


def stored_tag_names(run: Run) -> dict[str, list[str]]:
    rows = query(run.warehouse, "select segment_id, tags::varchar from klaviyo.segment_tags")
    return {segment_id: sorted(tag["name"] for tag in json.loads(tags)) for segment_id, tags in rows}


def load_segments(run: Run, **config: bool) -> tuple[dict, list]:
    """One segments run: its metadata and the listing requests it sent (`include` or not)."""
    before = len(run.sim.requests)
    run_config = {"ops": {SEGMENTS_NODE: {"config": config}}} if config else None
    result = materialize([pipeline.SEGMENTS], run.sim, run.work, run_config=run_config)
    metadata = {k: v.value for k, v in result.asset_materializations_for_node(SEGMENTS_NODE)[0].metadata.items()}
    listing = [r for r in run.sim.requests[before:] if r.path == "/api/segments"]
    return metadata, listing


def change_tag(run: Run, segment_id: str, **change: str) -> None:
    """Add or take off a tag through the simulator's admin endpoint, as from another process."""
    answer = httpx.post(f"{run.sim.base_url}/__simulator/segments/{segment_id}/tags", params=change)
    assert answer.status_code == 200, answer.text


def test_tags_added_or_taken_off_are_loaded_by_the_first_run_of_the_next_day(run: Run) -> None:
    tagged = next(s for s in run.sim.account.segments if s.tags)
    untagged = next(s for s in run.sim.account.segments if not s.tags)
    tag = tagged.tags[0].name
    listed = stored_tag_names(run)
    change_tag(run, tagged.id, remove=tag)
    change_tag(run, untagged.id, add=tag)
    pages = -(-SEGMENTS // 10)

    # later the same day: the segments alone, at the plain endpoint's limits; the tags stay as listed then
    zone = run.sim.account.zone
    ((listed_at,),) = query(run.warehouse, "select max(_loaded_at) from klaviyo.segment_tags")
    listed_day = listed_at.astimezone(zone).date()
    with time_machine.travel(dt.datetime.combine(listed_day, dt.time(23, 50), tzinfo=zone), tick=True):
        metadata, listing = load_segments(run)
    assert [r.query.get("include") for r in listing] == [None] * pages
    assert metadata["tags_loaded"] is False and metadata["requests_sent"] == 1 + pages
    assert stored_tag_names(run) == listed

    # the account's next day: its first run lists the tags, the removal and the addition both show
    tomorrow = listed_day + dt.timedelta(days=1)
    with time_machine.travel(dt.datetime.combine(tomorrow, dt.time(0, 5), tzinfo=zone), tick=True):
        metadata, listing = load_segments(run)
        again, second = load_segments(run)  # and only the first
    assert [r.query.get("include") for r in listing] == ["tags"] * pages
    assert metadata["tags_loaded"] is True
    assert dt.datetime.fromisoformat(metadata["tags_listed_at"]).astimezone(zone).date() == tomorrow
    assert [r.query.get("include") for r in second] == [None] * pages and again["tags_loaded"] is False
    assert again["tags_listed_at"] == metadata["tags_listed_at"]
    now = stored_tag_names(run)
    assert tag not in now[tagged.id] and tag in now[untagged.id]
    assert now == {s.id: sorted(t.name for t in s.tags) for s in run.sim.account.segments}

    # a run asked to, lists them at once: the tag goes back on the same day
    change_tag(run, tagged.id, add=tag)
    metadata, listing = load_segments(run, refresh_tags=True)
    assert [r.query.get("include") for r in listing] == ["tags"] * pages and metadata["tags_loaded"] is True
    assert tag in stored_tag_names(run)[tagged.id]


def test_a_key_without_tags_read_loads_segments_and_keeps_no_tags(make_simulator, tmp_path) -> None:
    sim = make_simulator(api_key=API_KEY, segment_count=4, speed=FAST, missing_scopes=("tags:read",))
    result = materialize([pipeline.SEGMENTS], sim, tmp_path)
    metadata = result.asset_materializations_for_node(SEGMENTS_NODE)[0].metadata
    assert metadata["tags_loaded"].value is False and metadata["segments"].value == 4
    tables = query(tmp_path / "warehouse.duckdb", "select table_name from information_schema.tables")
    assert ("segment_tags",) not in tables and ("segments",) in tables
    assert sim.count(path="/api/segments", status=403) == 1

    failed = materialize([pipeline.SEGMENTS], sim, tmp_path, env={"KLAVIYO_TAGS": "required"}, raise_on_error=False)
    assert not failed.success
    message = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error.message
    assert "tags:read" in message and API_KEY not in message


def test_every_exchange_followed_klaviyos_openapi_document(run: Run) -> None:
    assert contract_problems(run.sim) == []
