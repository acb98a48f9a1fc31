"""A backfill as the Dagster UI launches one, on the real webserver and daemon (`dagster dev`), two accounts.

"Materialize all" over 30 days: the UI's own GraphQL mutation with every asset selected, each account's series
with its range. Dagster runs it as a backfill: one segments run, one series run per account for its whole
range (the single-run policy), then the shared models, analyst copy and report once, after both. Nothing
else runs meanwhile or after (the shared build's automation condition does not build again what the backfill
built). `segment-pipeline backfill` submits the same kind of object, shown in the same place.
"""

import datetime as dt
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import duckdb
import httpx
import pytest

from segment_pipeline.dagster_api import DagsterApi
from segment_pipeline.defs.account_names import account_of, series_op_name
from segment_pipeline.devtools import processes
from segment_pipeline.devtools.demo import pipeline_environment
from segment_pipeline.settings import load_settings
from segment_pipeline.tables import RAW_DATASET, SEGMENT_SERIES_TABLE

DAYS = 30
SEGMENTS = 12
SPEED = 60.0
# every run of the instance, whoever started it: backfills, sensors, schedules
_RUNS = "{ runsOrError { ... on Runs { results { runId status tags { key value } assetSelection { path } } } } }"
_BACKFILLS = "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status } } } }"
_REPOSITORIES = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
_SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 20) { status timestamp } } }
  ... on SensorNotFoundError { message } ... on PythonError { message } } }
"""


def graphql(api: DagsterApi, query: str, variables: dict | None = None) -> dict:
    answer = httpx.post(f"{api.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    answer.raise_for_status()
    assert not answer.json().get("errors"), answer.json()
    return answer.json()["data"]


def series_window(timezone: str) -> tuple[str, str]:
    yesterday = dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    return (yesterday - dt.timedelta(days=DAYS - 1)).isoformat(), yesterday.isoformat()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    work = tmp_path_factory.mktemp("dagster_backfill")
    with processes.simulator(work, api_key="pk_backfill_test", accounts=2, segments=SEGMENTS, speed=SPEED) as sim:
        env = pipeline_environment(sim, work, SPEED)
        settings = load_settings(env)
        with processes.dagster(env, work / "dagster.log") as api:
            yield api, settings, env, sim, work


def wait_for(api: DagsterApi, backfill_id: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.backfill(backfill_id)
        if status.finished:
            return status
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} did not finish in {timeout} s: {api.backfill(backfill_id)}")


def test_materialize_all_over_30_days_is_one_backfill_of_one_run_per_account_then_one_shared_build(deployment):
    api, settings, _, sim, _ = deployment
    groups = api.asset_groups()
    windows = {account.name: series_window(account.timezone) for account in settings.accounts}
    # what the UI sends for "Materialize all" with a range: every asset, the partitioned ones with their range
    selection = {path: windows[account_of(path)] if path[-1] == SEGMENT_SERIES_TABLE else None for path in groups}
    backfill_id = api.launch_backfill(selection, title="Materialize all, 30 days")
    status = wait_for(api, backfill_id)
    assert status.status in ("COMPLETED", "COMPLETED_SUCCESS"), status
    assert all(run.status == "SUCCESS" for run in status.runs), status.runs

    def runs_with(predicate):
        return [run for run in status.runs if any(predicate(key) for key in run.asset_keys)]

    series_runs = runs_with(lambda key: key[-1] == SEGMENT_SERIES_TABLE)
    shared_runs = runs_with(lambda key: account_of(key) is None)
    # the accounts' listings: nothing but account assets, and no series
    segments_runs = [
        run
        for run in status.runs
        if all(account_of(key) is not None and key[-1] != SEGMENT_SERIES_TABLE for key in run.asset_keys)
    ]
    # one series run per account, for its whole range, and nothing of another account in it
    assert sorted(account_of(run.asset_keys[0]) for run in series_runs) == sorted(settings.accounts.names)
    for run in series_runs:
        (account,) = {account_of(key) for key in run.asset_keys}
        first, last = windows[account]
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            first,
            last,
        )
    assert len(shared_runs) == 1 and len(segments_runs) == 1
    assert len(status.runs) == len(settings.accounts) + 2
    # every run is the backfill's, as the UI shows it in the Backfills tab
    assert {run.tags.get("dagster/backfill") for run in status.runs} == {backfill_id}
    backfills = graphql(api, _BACKFILLS)["partitionBackfillsOrError"]["results"]
    assert backfill_id in {backfill["id"] for backfill in backfills}
    check_run_timings(api, backfill_id, series_runs, shared_runs[0])

    # the rows of each account's days, as the simulator serves them
    with duckdb.connect(str(settings.storage.analytics_path), read_only=True) as connection:
        counts = dict(
            connection.execute(
                f"select account_id, count(*) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE} group by account_id"
            ).fetchall()
        )
    assert counts == {account.account_id: DAYS * account.segments for account in sim.accounts}


def check_run_timings(api: DagsterApi, backfill_id: str, series_runs: list, shared_run) -> None:
    """The backfill's runs as `run_timings` reads them (what `make benchmark` times accounts by): its runs and
    no other, each series step inside its run, the shared build after every series step."""
    timings = {timing.run.run_id: timing for timing in api.run_timings(tags={"dagster/backfill": backfill_id})}
    assert set(timings) == {run.run_id for run in api.backfill(backfill_id).runs}
    for timing in timings.values():
        assert timing.start is not None and timing.end is not None and timing.start <= timing.end, timing
    for run in series_runs:
        timing = timings[run.run_id]
        (step,) = [step for step in timing.steps if step.step_key == series_op_name(account_of(run.asset_keys[0]))]
        assert step.status == "SUCCESS" and timing.start <= step.start <= step.end <= timing.end, timing
        assert timings[shared_run.run_id].start >= step.end


def test_the_shared_build_does_not_run_again_after_the_backfill_built_it(deployment):
    api, *_ = deployment
    (repository,) = graphql(api, _REPOSITORIES)["repositoriesOrError"]["nodes"]
    selector = {
        "repositoryLocationName": repository["location"]["name"],
        "repositoryName": repository["name"],
        "sensorName": "shared_build_sensor",
    }
    before = graphql(api, _RUNS)["runsOrError"]["results"]
    # two evaluations of the automation sensor after the backfill ended (it ticks every 30 s)
    deadline = time.monotonic() + 150
    ticks = []
    started = time.time()
    while time.monotonic() < deadline:
        found = graphql(api, _SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        ticks = [tick for tick in (found.get("sensorState") or {}).get("ticks") or [] if tick["timestamp"] > started]
        if len(ticks) >= 2:
            break
        time.sleep(5)
    assert len(ticks) >= 2, f"the automation sensor did not tick twice: {found}"
    after = graphql(api, _RUNS)["runsOrError"]["results"]
    assert [run["runId"] for run in after] == [run["runId"] for run in before]


def test_segment_pipeline_backfill_is_a_dagster_backfill_too(deployment):
    api, settings, env, _, work = deployment
    account = settings.accounts.names[0]
    command = [sys.executable, "-m", "segment_pipeline.cli", "backfill", "--days", "2", "--account", account]
    done = subprocess.run(
        [*command, "--dagster-url", api.url], env=env, capture_output=True, text=True, timeout=600, cwd=work
    )
    assert done.returncode == 0, done.stdout + done.stderr
    submitted = next(line for line in done.stdout.splitlines() if line.startswith("backfill ") and "submitted" in line)
    backfill_id = submitted.split()[1]
    status = api.backfill(backfill_id)
    assert status.status in ("COMPLETED", "COMPLETED_SUCCESS") and status.runs
    backfills = graphql(api, _BACKFILLS)["partitionBackfillsOrError"]["results"]
    assert backfill_id in {backfill["id"] for backfill in backfills}
