"""The shared build (dbt models, analyst copy, report) runs once after several accounts' loads, started by
Dagster's declarative automation under the real daemon (`shared_build_sensor`, `automation.SHARED_BUILD`).

Two accounts' jobs overlap: one finishes while the other is still loading (its report response is held by
the simulator until the test lets it go). The daemon's automation sensor must wait while that run is going,
then start one build after it, which publishes both accounts' series, and start nothing more once built.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import dagster as dg
import yaml
from dagster._core.scheduler.instigation import TickStatus  # not exported by dagster itself

from segment_pipeline.defs.account_names import job_name
from segment_pipeline.defs.automation import AUTOMATION_INTERVAL_SECONDS, AUTOMATION_SENSOR
from segment_pipeline.defs.publish.assets import ANALYTICS_COPY_KEY, GROWTH_CHART_KEY
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .dagster_processes import DagsterProcess, job_execute, pipeline_env
from .pipeline_helpers import FAST, query

DAILY_MART = dg.AssetKey(["marts", "segment_growth_daily"])
SHARED = (DAILY_MART, ANALYTICS_COPY_KEY, GROWTH_CHART_KEY)
ACCOUNTS = {
    "east": {"api_key": "pk_test_east0123456789abcdef", "seed": 31, "segment_count": 3, "timezone": "US/Eastern"},
    "west": {"api_key": "pk_test_west0123456789abcdef", "seed": 32, "segment_count": 4, "timezone": "US/Pacific"},
}
DAYS = 10


def deployment_env(sim, work):
    entries = [
        {
            "name": name,
            "api_key_env": f"KLAVIYO_API_KEY_{name.upper()}",
            "timezone": spec["timezone"],
            "report_rate_per_minute": 2 * FAST,
        }
        for name, spec in ACCOUNTS.items()
    ]
    accounts_file = work / "accounts.yaml"
    accounts_file.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=False), encoding="utf-8")
    return pipeline_env(
        sim,
        work,
        KLAVIYO_ACCOUNTS_FILE=str(accounts_file),
        # the held response must not time out meanwhile
        KLAVIYO_TIMEOUT="300",
        **{f"KLAVIYO_API_KEY_{name.upper()}": spec["api_key"] for name, spec in ACCOUNTS.items()},
    )


def days_of(sim, name: str) -> tuple[dt.date, dt.date]:
    last = sim.accounts[name].account.today() - dt.timedelta(days=1)
    return last - dt.timedelta(days=DAYS - 1), last


def automation_ticks(instance: dg.DagsterInstance) -> list:
    """The automation sensor's finished evaluations so far, oldest first."""
    state = next((s for s in instance.all_instigator_state() if s.name == AUTOMATION_SENSOR), None)
    if state is None:
        return []
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    return sorted((t for t in ticks if t.status != TickStatus.STARTED), key=lambda t: t.timestamp)


def automation_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The runs the automation sensor started."""
    return instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": AUTOMATION_SENSOR}))


def wait_for(condition, daemon: DagsterProcess, what: str, timeout: float = 4 * AUTOMATION_INTERVAL_SECONDS):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert daemon.process.poll() is None, daemon.output[-4000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{daemon.output[-4000:]}"
        time.sleep(0.5)
    return found


# SHARED_BUILD's `~any_deps_in_progress` looks at each model's direct deps: every model follows every account's
# series (the translator adds them), so while any account's series is loading no model is requested, not even
# one that reads only segment tables.
def test_the_shared_build_runs_once_after_every_overlapping_accounts_load(make_simulator, tmp_path):
    sim = make_simulator(accounts=ACCOUNTS, speed=FAST)
    env = deployment_env(sim, tmp_path)
    # west's first report response waits for the test: its run stays in progress as long as the test needs
    release = threading.Event()

    def held(body):
        release.wait(timeout=240)
        return body

    hold = sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=held, times=1)

    daemon = DagsterProcess(["dagster._daemon", "run", "-m", "segment_pipeline.definitions"], env)
    west = east = None
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            wait_for(lambda: automation_ticks(instance), daemon, "the automation sensor's first evaluation")
            west = job_execute(env, *days_of(sim, "west"), job=job_name("west"))
            west.wait_until(lambda: hold.used >= 1, what="west's report request")
            east = job_execute(env, *days_of(sim, "east"), job=job_name("east"))
            assert east.finish() == 0, east.output[-4000:]
            east_done = time.time()

            # an evaluation after east's load, while west is still loading: it starts nothing
            waiting = wait_for(
                lambda: [t for t in automation_ticks(instance) if t.timestamp > east_done], daemon, "an evaluation"
            )[0]
            assert west.process.poll() is None, "west's run ended before the evaluation"
            started = {
                run.run_id: sorted(k.to_user_string() for k in run.asset_selection or ())
                for run in automation_runs(instance)
            }
            assert waiting.run_ids == [] and not started, f"a build started while west was still loading: {started}"

            release.set()
            assert west.finish() == 0, west.output[-4000:]
            west_done = time.time()
            (build,) = wait_for(lambda: automation_runs(instance), daemon, "the shared build")
            assert set(SHARED) <= build.asset_selection
            finished = wait_for(
                lambda: (r := instance.get_run_by_id(build.run_id)).is_finished and r, daemon, "the build to end"
            )
            assert finished.status == dg.DagsterRunStatus.SUCCESS, daemon.output[-4000:]
            # started after both loads ended, by the daemon
            start = instance.get_run_record_by_id(build.run_id).start_time
            assert start > west_done > east_done

            # evaluations after the build: built from everything loaded, nothing more starts
            built_at = instance.get_run_record_by_id(build.run_id).end_time
            wait_for(
                lambda: len([t for t in automation_ticks(instance) if t.timestamp > built_at]) >= 1,
                daemon,
                "an evaluation after the build",
            )
            assert [run.run_id for run in automation_runs(instance)] == [build.run_id]
            for key in SHARED:
                records = instance.fetch_materializations(key, limit=10).records
                assert [record.run_id for record in records] == [build.run_id], key
    finally:
        release.set()
        for process in (daemon, west, east):
            if process is not None:
                process.kill_group()

    # the analyst copy holds both accounts' series, exactly as Klaviyo reports them
    for name in ACCOUNTS:
        first, last = days_of(sim, name)
        account = sim.accounts[name].account
        truth = {
            (segment.id, row["date"]): row["total_members"]
            for segment in account.segments
            for row in account.series(segment.id, first, last)
        }
        published = query(
            tmp_path / "analytics.duckdb",
            "select segment_id, date, total_members from marts.segment_growth_daily "
            "where account_id = ? and date between ? and ?",
            [sim.accounts[name].account_id, first, last],
        )
        assert {(segment_id, day): total for segment_id, day, total in published} == truth, name
