"""Reliability through real processes: kill -9 at any point, a quota spent mid-backfill, a backfill larger than
the report budget finished by the resume sensor under a real daemon. Everything is compared with the
simulator's truth, read from the real DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from segment_pipeline import warehouse as wh
from segment_pipeline.defs.account_names import asset_key
from segment_pipeline.defs.ingest.series_results import RESUME_AT_TAG, RESUMES_TAG, UNFINISHED_TAG
from segment_pipeline.klaviyo import minimal_request_count
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH
from segment_pipeline.klaviyo.planner import earliest_reportable_day, settling_by_segment
from segment_pipeline.lake import Lake
from segment_pipeline.warehouse import lock_holder_description, warehouse_lock

from .dagster_processes import SHARED_TO_COPY, DagsterProcess, asset_materialize, job_execute, pipeline_env
from .pipeline_helpers import (
    API_KEY,
    FAST,
    SEGMENTS,
    SERIES,
    definitions,
    lake_env,
    materialize,
    query,
    range_tags,
    stored_series,
)
from .postgres_fixtures import make_lake

STATS = ("total_members", "members_added", "members_removed", "net_members_changed")
SERIES_KEY = asset_key("default", "segment_series_daily")
SERIES_NODE = "klaviyo__default__segment_series_daily"
# the series alone, for a range of days (one run: its backfill policy is single-run); the listing is done once
SERIES_SELECTION = f'key:"{SERIES_KEY.to_user_string()}"'

pytestmark = pytest.mark.timeout(600)


def truth(sim, first, last):
    return {
        (s.id, row["date"]): tuple(row[k] for k in STATS)
        for s in sim.account.segments
        for row in sim.account.series(s.id, first, last)
    }


def stored(path: Path) -> dict:
    """The raw series as {(segment, day): stats}, read under the warehouse lock (a run may be going on)."""
    with warehouse_lock(path, run_id="test", duckdb_wait=60), duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"select segment_id, date, {', '.join(STATS)} from klaviyo.segment_series_daily").fetchall()
        duplicates = con.execute(
            "select count(*) from (select 1 from klaviyo.segment_series_daily "
            "group by account_id, segment_id, date having count(*) > 1)"
        ).fetchone()[0]
    assert duplicates == 0
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def series_requests(sim) -> list[tuple[str, str, tuple]]:
    """(start, end, segment filter) of every series request the simulator answered with 200."""
    found = []
    for entry in sim.requests:
        if entry.path == SEGMENT_SERIES_PATH and entry.status == 200:
            attributes = entry.json["data"]["attributes"]
            found.append(
                (attributes["timeframe"]["start"][:10], attributes["timeframe"]["end"][:10], attributes["filter"])
            )
    return found


def unsettled_segments(warehouse: Path | Lake, sim) -> set[str]:
    """The segments whose numbers have not settled today, as the planner decides it (`klaviyo.planner`)."""
    today = sim.account.today()
    facts = wh.segment_settling_facts(warehouse, sim.account.account_id, earliest_reportable_day(today))
    return {sid for sid, s in settling_by_segment(facts, sim.account.timezone).items() if s.settled_on > today}


def staged_files(work: Path) -> list[Path]:
    return sorted((work / "state" / "staging").rglob("*.parquet"))


# ------------------------------------------------------------------------------------------ kill -9


def test_a_run_killed_at_any_point_is_finished_by_the_same_command(make_simulator, tmp_path):
    # 201 segments: 3 batches of ids, so 3 report requests about a second apart; few days keep dbt quick
    sim = make_simulator(api_key=API_KEY, segment_count=201, speed=FAST)
    env = pipeline_env(sim, tmp_path)
    materialize([SEGMENTS], sim, tmp_path)  # the listing once, in process; the runs below are the CLI's
    last = sim.account.today() - dt.timedelta(days=10)
    first = last - dt.timedelta(days=4)
    planned = minimal_request_count(201, 5)
    warehouse = tmp_path / "warehouse.duckdb"

    # 1. killed during the report requests: the second request has reached Klaviyo
    run = asset_materialize(env, SERIES_SELECTION, first, last)
    run.wait_until(lambda: sim.count(path=SEGMENT_SERIES_PATH) >= 2, what="the second report request")
    run.kill()
    kept = staged_files(tmp_path)
    assert kept, "the first response was paid for: it must be on disk"

    # 2. killed while dlt loads the staged responses
    run = asset_materialize(env, SERIES_SELECTION, first, last)
    run.wait_until(lambda: run.saw("staged report responses into the warehouse"), what="the load")
    run.kill()
    # the series again loads the range (the staged responses first); the shared build follows it
    run = asset_materialize(env, SERIES_SELECTION, first, last)
    assert run.finish() == 0, run.output[-4000:]

    # 3. killed while dbt builds (dbt, a child process, may outlive the kill by a few seconds)
    run = asset_materialize(env, SHARED_TO_COPY)
    run.wait_until(lambda: run.saw("Running dbt command"), what="dbt")
    run.kill()

    # 4. killed while publishing the analyst copy
    run = asset_materialize(env, SHARED_TO_COPY)
    run.wait_until(lambda: run.saw('"analytics__warehouse_copy"'), what="the publish step")
    run.kill()

    # 5. the same commands again finish: no lock or slot of a dead run stands in their way
    run = asset_materialize(env, SERIES_SELECTION, first, last)
    assert run.finish() == 0, run.output[-4000:]
    run = asset_materialize(env, SHARED_TO_COPY)
    assert run.finish() == 0, run.output[-4000:]
    assert "RUN_SUCCESS" in run.output

    assert stored(warehouse) == truth(sim, first, last)
    assert staged_files(tmp_path) == []
    assert lock_holder_description(warehouse) is None
    # nothing paid for was asked again, except the one request the first kill interrupted; a segment whose
    # numbers have not settled yet (created in the last days) is asked again by every run, by design
    unsettled = unsettled_segments(warehouse, sim)
    requests = [r for r in series_requests(sim) if not set(re.findall(r'"([^"]+)"', r[2])) <= unsettled]
    assert planned <= len(requests) <= planned + 1, requests
    assert requests.count(requests[0]) == 1, "the first response was kept and never asked for again"
    with duckdb.connect(str(tmp_path / "analytics.duckdb"), read_only=True) as con:
        marts = con.execute(
            "select count(*), count(distinct (segment_id, date)) from marts.segment_growth_daily"
        ).fetchone()
        raw = con.execute("select count(*) from klaviyo.segment_series_daily").fetchone()[0]
    assert marts == (201 * 5, 201 * 5) and raw == 201 * 5


def test_a_run_killed_while_it_loads_the_lake_is_finished_by_the_same_command(
    make_simulator, tmp_path, postgres, extension_dir, monkeypatch
):
    # the same proof on a DuckLake warehouse (PostgreSQL catalog, Parquet files): the run process is killed
    # after dlt started loading the staged responses into the lake, before it said the rows were loaded
    catalog, password = postgres.new_database("crash")
    monkeypatch.setenv("PGPASSWORD", password)  # libpq's, here and in the runs (pipeline_env copies it)
    lake = make_lake(catalog, tmp_path, extension_dir)
    sim = make_simulator(api_key=API_KEY, segment_count=101, speed=FAST)  # 2 report requests
    env = pipeline_env(sim, tmp_path, **lake_env(lake))
    materialize([SEGMENTS], sim, tmp_path, env=lake_env(lake))
    last = sim.account.today() - dt.timedelta(days=10)
    first = last - dt.timedelta(days=2)
    planned = minimal_request_count(101, 3)

    run = asset_materialize(env, SERIES_SELECTION, first, last)
    run.wait_until(lambda: run.saw("staged report responses into the warehouse"), what="the load into the lake")
    run.kill()
    assert not run.saw("rows from"), "the load had finished before the kill: " + run.output[-3000:]
    assert staged_files(tmp_path), "what was paid for stays staged until the lake has it"

    run = asset_materialize(env, SERIES_SELECTION, first, last)
    assert run.finish() == 0, run.output[-4000:]
    assert stored_series(lake) == truth(sim, first, last)
    duplicates = "select count(*) - count(distinct (account_id, segment_id, date)) from klaviyo.segment_series_daily"
    assert query(lake, duplicates) == [(0,)]
    assert staged_files(tmp_path) == []
    # the second run loaded what the first had staged: nothing settled was asked twice
    unsettled = unsettled_segments(lake, sim)
    requests = [r for r in series_requests(sim) if not set(re.findall(r'"([^"]+)"', r[2])) <= unsettled]
    assert len(requests) == planned, requests


# ------------------------------------------------------------------------------- quota mid-backfill


def test_a_quota_spent_mid_backfill_keeps_what_came_and_the_rerun_sends_only_the_rest(make_simulator, tmp_path):
    # a simulated day of 6 s, and every wait for the quota counts as "spent" rather than being slept through
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=14_400)
    defs = definitions(sim, tmp_path, KLAVIYO_MAX_RETRY_AFTER="0.5")
    materialize([SEGMENTS], sim, tmp_path, defs=defs)
    last = sim.account.today() - dt.timedelta(days=20)
    first = last - dt.timedelta(days=179)
    planned = minimal_request_count(3, 180)
    sim.reset_log()

    # another integration spends the account's quota right after our first response
    # (spent for 3 s at least: the next request must not fall into the next 6-s day)
    def spend_the_quota(body):
        sim.exhaust_report_quota(lasting=3.0)
        return body

    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=spend_the_quota, times=1)
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(
            [SERIES], sim, tmp_path, defs=defs, instance=instance, tags=range_tags(first, last), raise_on_error=False
        )
        resume_at = instance.get_run_by_id(result.run_id).tags[RESUME_AT_TAG]
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert f"1 of {planned} requests done; the rest resumes at" in message and "quota" in message
    assert len(series_requests(sim)) == 1
    assert stored(tmp_path / "warehouse.duckdb") == truth(sim, first, first + dt.timedelta(days=59))

    # the quota is back: the same range again sends only what is missing
    time.sleep(max(0.0, (dt.datetime.fromisoformat(resume_at) - dt.datetime.now(dt.UTC)).total_seconds()))
    result = materialize([SERIES], sim, tmp_path, defs=defs, tags=range_tags(first, last))
    assert len(series_requests(sim)) == planned
    assert stored(tmp_path / "warehouse.duckdb") == truth(sim, first, last)
    metadata = result.asset_materializations_for_node(SERIES_NODE)[0].metadata
    assert metadata["run_cells_final_already"].value == 3 * 60
    assert metadata["run_cells_requested_now"].value == 3 * 120 and metadata["run_cells_still_missing"].value == 0

    # a third run of the same old range has nothing to ask
    result = materialize([SERIES], sim, tmp_path, defs=defs, tags=range_tags(first, last))
    assert len(series_requests(sim)) == planned
    metadata = result.asset_materializations_for_node(SERIES_NODE)[0].metadata
    assert metadata["run_cells_final_already"].value == 3 * 180 and metadata["run_report_requests_sent"].value == 0

    # unless asked to: refetch sends the whole plan again
    materialize(
        [SERIES],
        sim,
        tmp_path,
        defs=defs,
        tags=range_tags(first, last),
        run_config={"ops": {SERIES_NODE: {"config": {"refetch": True}}}},
    )
    assert len(series_requests(sim)) == 2 * planned
    assert stored(tmp_path / "warehouse.duckdb") == truth(sim, first, last)


def test_segments_created_since_get_their_history_and_nothing_else_is_asked(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    last = sim.account.today() - dt.timedelta(days=20)
    first = last - dt.timedelta(days=29)
    materialize([SERIES], sim, tmp_path, tags=range_tags(first, last))
    # two more segments appear in the account (the same seed: the first three stay as they were)
    from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig

    with KlaviyoSimulator(SimulatorConfig(api_key=API_KEY, segment_count=5, speed=FAST, seed=sim.config.seed)) as more:
        materialize([SEGMENTS], more, tmp_path)
        result = materialize([SERIES], more, tmp_path, tags=range_tags(first, last))
        requests = series_requests(more)
        assert len(requests) == 1
        new_ids = {s.id for s in more.account.segments} - {s.id for s in sim.account.segments}
        assert all(sid in requests[0][2] for sid in new_ids)
        assert not any(s.id in requests[0][2] for s in sim.account.segments)
        assert stored(tmp_path / "warehouse.duckdb") == truth(more, first, last)
        metadata = result.asset_materializations_for_node(SERIES_NODE)[0].metadata
        assert metadata["run_cells_final_already"].value == 3 * 30
        assert metadata["run_cells_requested_now"].value == 2 * 30


# ------------------------------------------------------------------- larger than the budget, unattended


def partition_status(instance, partitions, first, last) -> dict[str, str | None]:
    """Each series partition's status as the UI shows it (materialized, failed, in progress, or none)."""
    keys = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    statuses = instance.get_status_by_partition(SERIES_KEY, keys, partitions) or {}
    return {key: (status.value if status else None) for key, status in statuses.items()}


def test_a_backfill_larger_than_the_budget_finishes_by_itself_under_the_daemon(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    # a "day" of report budget lasts 10 s and holds one request; the sensor looks every second
    env = pipeline_env(
        sim,
        tmp_path,
        KLAVIYO_REPORT_DAILY_LIMIT="1",
        KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS="10",
        SERIES_RESUME_INTERVAL_SECONDS="1",
    )
    last = sim.account.today() - dt.timedelta(days=10)
    first = last - dt.timedelta(days=120)  # 121 days: windows of 60, 60 and 1 day, one request each
    planned = minimal_request_count(3, 121)
    assert planned == 3
    warehouse = tmp_path / "warehouse.duckdb"
    partitions = definitions(sim, tmp_path).get_assets_def(SERIES_KEY).partitions_def

    # the engineer starts the range from the command line; it sends what today's budget allows
    run = job_execute(env, first, last)
    assert run.finish() != 0
    assert f"1 of {planned} requests done; the rest resumes at" in run.output
    assert len(series_requests(sim)) == 1

    seen: list[int] = []  # materialized days at each change
    daemon = DagsterProcess(["dagster._daemon", "run", "-m", "segment_pipeline.definitions"], env)
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            deadline = time.monotonic() + 420
            checked: set[str] = set()
            while True:
                status = partition_status(instance, partitions, first, last)
                materialized = {k for k, v in status.items() if v == "MATERIALIZED"}
                # the UI never shows a day as materialized before every segment's row of it is loaded
                if materialized - checked:
                    rows = stored(warehouse)
                    for key in materialized - checked:
                        day = dt.date.fromisoformat(key)
                        assert {k: v for k, v in rows.items() if k[1] == day} == truth(sim, day, day), key
                    checked |= materialized
                    seen.append(len(materialized))
                if len(materialized) == 121:
                    break
                assert time.monotonic() < deadline, f"not finished: {status}\n{daemon.output[-3000:]}"
                assert daemon.process.poll() is None, daemon.output[-3000:]
                time.sleep(0.5)
            # every state is in Dagster: the runs cut short are tagged with what they left, and each run the
            # sensor started names the run it resumes
            cut = instance.get_runs(dg.RunsFilter(tags={UNFINISHED_TAG: "default"}))
            resumed = instance.get_runs(dg.RunsFilter(tags={RESUMES_TAG: cut[-1].run_id}))
            resumed += instance.get_runs(dg.RunsFilter(tags={RESUMES_TAG: cut[0].run_id}))
            # (the sensor's skip messages meanwhile, "resumes at T", depend on when its ticks fall: they are
            # checked on the sensor itself in test_resume_sensor)
    finally:
        daemon.kill_group()

    # three quota "days": the command line's run, then two runs the sensor started, one request each
    assert len(series_requests(sim)) == planned
    assert len(cut) == 2  # the command line's run and the first resume ran out of budget
    assert len({r.run_id for r in resumed}) == 2 and all(r.tags.get("dagster/sensor_name") for r in resumed)
    assert stored(warehouse) == truth(sim, first, last)
    # days became materialized window by window, oldest first: 60, then 120, then all 121
    assert seen[:1] == [60] and seen[-1] == 121
