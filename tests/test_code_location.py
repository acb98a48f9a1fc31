"""The code location loads the way `dagster dev -w workspace.yaml` loads it, without any secret.

`dagster definitions validate` and the real webserver run as subprocesses from the repository root, with
KLAVIYO_API_KEY removed from their environment and DAGSTER_HOME pointing at a temporary copy of the project's
instance settings; the webserver is then asked over GraphQL what the UI would show. An in-process test
checks what GraphQL does not show directly: that no step queues on a Dagster pool and the shared partitions object.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TIMEZONE = "US/Eastern"
LOCATION = "segment_pipeline.definitions"
REPOSITORY = "__repository__"
JOB = "segment_growth_job"
SCHEDULE = "segment_growth_daily_schedule"
FIRST_PARTITION = "2023-06-01"
STARTUP_TIMEOUT = 90

SERIES = ("klaviyo", "segment_series_daily")
KLAVIYO_ASSETS = [
    ("klaviyo", "segments"),
    ("klaviyo", "segment_definitions"),
    ("klaviyo", "accounts"),
    ("klaviyo", "segment_tags"),
    SERIES,
]
# dagster-dbt keys a model by its folder under models/ and its name (the default translator's key)
DBT_MARTS = [
    ("marts", name)
    for name in (
        "segment_growth_daily",
        "segment_growth_weekly",
        "segment_growth_monthly",
        "segments",
        "segment_definition_history",
        "segment_anomalies",
        "segment_growth_by_tag_daily",
        "segment_growth_by_tag_weekly",
    )
]
ANALYTICS_COPY = ("analytics", "warehouse_copy")
GROWTH_CHART = ("analytics", "growth_chart")
EXPECTED_ASSETS = [*KLAVIYO_ASSETS, *DBT_MARTS, ANALYTICS_COPY, GROWTH_CHART]
SERIES_CHECKS = {
    "series_has_one_row_per_segment_day",
    "series_net_equals_added_minus_removed",
    "series_reconciles_with_klaviyo",
}


# --------------------------------------------------------------------------------------------- helpers


def _env(dagster_home: Path) -> dict[str, str]:
    """The environment of `dagster dev` minus the secret: code must load without KLAVIYO_API_KEY."""
    env = {**os.environ, "KLAVIYO_TIMEZONE": TIMEZONE, "DAGSTER_HOME": str(dagster_home)}
    env.pop("KLAVIYO_API_KEY", None)
    # not a `dagster dev` process: use the manifest conftest built instead of re-parsing the dbt project
    env.pop("DAGSTER_IS_DEV_CLI", None)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no output>"


def _yesterday_and_today() -> tuple[str, str]:
    today = dt.datetime.now(ZoneInfo(TIMEZONE)).date()
    return (today - dt.timedelta(days=1)).isoformat(), today.isoformat()


class Webserver:
    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        self.process = process
        self.url = url
        self.log = log

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        assert not payload.get("errors"), f"GraphQL errors: {payload['errors']}"
        return payload["data"]

    def wait_until_up(self, deadline: float) -> None:
        """Poll /server_info until the server answers, failing early if it exits."""
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"webserver exited with {self.process.returncode}:\n{_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"webserver did not answer /server_info in {STARTUP_TIMEOUT}s:\n{_tail(self.log)}")
            time.sleep(0.5)

    def wait_until_loaded(self, deadline: float) -> list[dict]:
        """Poll the workspace until no location is LOADING; return the location entries."""
        while True:
            data = self.graphql(WORKSPACE_QUERY)
            workspace = data["workspaceOrError"]
            assert workspace["__typename"] == "Workspace", workspace
            entries = workspace["locationEntries"]
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return entries
            if time.monotonic() > deadline:
                pytest.fail(f"code location still loading after {STARTUP_TIMEOUT}s:\n{_tail(self.log)}")
            time.sleep(0.5)


WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

ASSET_NODES_QUERY = """
{
  assetNodes {
    assetKey { path }
    isPartitioned
    pools
    jobNames
    partitionDefinition { type description fmt }
    backfillPolicy { policyType maxPartitionsPerRun }
    hasAssetChecks
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name } }
    }
  }
}
"""

SERIES_PARTITIONS_QUERY = """
query SeriesPartitions($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetKey { path }
    isPartitioned
    partitionDefinition { type description fmt dimensionTypes { type } }
    partitionKeys
  }
}
"""

REPOSITORIES_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name isAssetJob } } }
    ... on PythonError { message }
  }
}
"""

SCHEDULES_QUERY = """
query Schedules($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules { results { name cronSchedule pipelineName executionTimezone defaultStatus } }
    ... on PythonError { message }
    ... on RepositoryNotFoundError { message }
  }
}
"""


# -------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # create the instance's tables once, here: the webserver, `definitions validate` and `dg` start together
    # below, and two processes creating a fresh SQLite schema at once can fail with "table ... already exists"
    subprocess.run(
        [str(VENV_BIN / "dagster"), "instance", "migrate"], env=_env(home), check=True, capture_output=True, timeout=120
    )
    return home


@pytest.fixture(scope="module")
def webserver_process(dagster_home, tmp_path_factory):
    """The webserver, started but not waited for, so `definitions validate` can run while it loads."""
    port = _free_port()
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=_env(dagster_home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Webserver(process, f"http://127.0.0.1:{port}", log)
    server.deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        yield server
    finally:
        # the webserver and the code server it spawned share the new session's process group
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # make sure nothing else in the group outlives the test (e.g. the gRPC code server)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def webserver(webserver_process) -> Webserver:
    webserver_process.wait_until_up(webserver_process.deadline)
    webserver_process.entries = webserver_process.wait_until_loaded(webserver_process.deadline)
    return webserver_process


@pytest.fixture(scope="module")
def asset_nodes(webserver) -> dict[tuple[str, ...], dict]:
    nodes = webserver.graphql(ASSET_NODES_QUERY)["assetNodes"]
    return {tuple(node["assetKey"]["path"]): node for node in nodes}


# ------------------------------------------------------------------------------------------- subprocess


def test_definitions_validate_without_api_key(webserver_process, dagster_home):
    result = subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=_env(dagster_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Validation successful" in output, output[-6000:]


def test_dg_checks_and_lists_the_same_definitions(dagster_home):
    """`dg check defs` and `dg list defs` (dagster-dg-cli) load the code location from pyproject's [tool.dg]."""
    runs = {
        command: subprocess.run(
            [str(VENV_BIN / "dg"), command, "defs"],
            cwd=REPO,
            env=_env(dagster_home),
            capture_output=True,
            text=True,
            timeout=180,
        )
        for command in ("check", "list")
    }
    for command, result in runs.items():
        assert result.returncode == 0, f"dg {command} defs: " + (result.stdout + result.stderr)[-6000:]
    assert "All definitions loaded successfully" in runs["check"].stdout + runs["check"].stderr
    listing = runs["list"].stdout
    for key in EXPECTED_ASSETS:
        assert "/".join(key) in listing, key
    assert JOB in listing


# ------------------------------------------------------------------------------------------- webserver


def test_location_is_loaded(webserver):
    entries = {entry["name"]: entry for entry in webserver.entries}
    assert set(entries) == {LOCATION}
    entry = entries[LOCATION]
    assert entry["loadStatus"] == "LOADED"
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    assert [repo["name"] for repo in location["repositories"]] == [REPOSITORY]

    repositories = webserver.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]
    assert repositories["__typename"] == "RepositoryConnection", repositories
    (repository,) = repositories["nodes"]
    assert repository["location"]["name"] == LOCATION
    assert JOB in {job["name"] for job in repository["jobs"]}


def test_asset_nodes(asset_nodes):
    missing = [key for key in EXPECTED_ASSETS if key not in asset_nodes]
    assert not missing, f"missing assets {missing}; UI shows {sorted(asset_nodes)}"
    for key in EXPECTED_ASSETS:
        assert JOB in asset_nodes[key]["jobNames"], key
    # steps take turns on the warehouse through its kernel lock, never a Dagster pool (a killed run's pool
    # slot is never given back on the command line)
    for key in [*KLAVIYO_ASSETS, *DBT_MARTS, ANALYTICS_COPY]:
        assert asset_nodes[key]["pools"] == [], (key, asset_nodes[key]["pools"])


def test_series_daily_partitions_and_unpartitioned_models(webserver, asset_nodes):
    yesterday, today = _yesterday_and_today()
    data = webserver.graphql(SERIES_PARTITIONS_QUERY, {"key": {"path": list(SERIES)}})
    yesterday_after, today_after = _yesterday_and_today()
    (series,) = data["assetNodes"]
    assert series["isPartitioned"]
    definition = series["partitionDefinition"]
    assert definition["type"] == "TIME_WINDOW"
    assert definition["fmt"] == "%Y-%m-%d"
    assert "Daily" in definition["description"] and TIMEZONE in definition["description"], definition
    keys = series["partitionKeys"]
    assert keys[0] == FIRST_PARTITION
    # the last partition is yesterday in the account's timezone: today is not finished
    assert keys[-1] in {yesterday, yesterday_after}, (keys[-1], yesterday)
    assert today not in keys and today_after not in keys
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys)
    expected_count = (dt.date.fromisoformat(keys[-1]) - dt.date.fromisoformat(FIRST_PARTITION)).days + 1
    assert len(keys) == expected_count  # one key per day, no gaps

    series_node = asset_nodes[SERIES]
    assert series_node["backfillPolicy"] == {"policyType": "SINGLE_RUN", "maxPartitionsPerRun": None}
    # the models and the publishing steps are not partitioned (the daily mart finds what changed by itself)
    # but allowed into single-run ranges, so a backfill of everything builds and publishes once, in its run
    for key in [*DBT_MARTS, ANALYTICS_COPY, GROWTH_CHART]:
        node = asset_nodes[key]
        assert not node["isPartitioned"], key
        assert node["backfillPolicy"] == series_node["backfillPolicy"], key
    # the segments listing is not partitioned: every run refreshes all segments
    assert not asset_nodes[("klaviyo", "segments")]["isPartitioned"]


def test_daily_schedule(webserver):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    result = webserver.graphql(SCHEDULES_QUERY, {"selector": selector})["schedulesOrError"]
    assert result["__typename"] == "Schedules", result
    schedules = {schedule["name"]: schedule for schedule in result["results"]}
    assert SCHEDULE in schedules, sorted(schedules)
    schedule = schedules[SCHEDULE]
    assert schedule["pipelineName"] == JOB
    assert schedule["cronSchedule"] == "0 6 * * *"
    assert schedule["executionTimezone"] == TIMEZONE
    assert schedule["defaultStatus"] == "STOPPED"


def test_asset_checks(asset_nodes):
    def checks(key):
        node = asset_nodes[key]
        result = node["assetChecksOrError"]
        assert result["__typename"] == "AssetChecks", (key, result)
        return {check["name"] for check in result["checks"]}

    assert asset_nodes[SERIES]["hasAssetChecks"]
    assert checks(SERIES) == SERIES_CHECKS
    assert "no_anomalies_on_the_newest_day" in checks(("marts", "segment_anomalies"))
    # dbt's tests surface as checks on the models
    for key in DBT_MARTS:
        assert asset_nodes[key]["hasAssetChecks"], key
        assert checks(key), key


# ------------------------------------------------------------------------------------------ in process


def test_definitions_in_process():
    import dagster as dg

    from segment_pipeline.definitions import defs
    from segment_pipeline.defs.ingest.assets import segment_series_daily
    from segment_pipeline.defs.ingest.checks import series_checks
    from segment_pipeline.defs.partitions import daily_partitions
    from segment_pipeline.defs.publish.assets import analytics_copy
    from segment_pipeline.defs.transform.assets import segment_growth_models

    job = defs.resolve_job_def(JOB)
    assert job.name == JOB
    assert job.partitions_def == daily_partitions

    graph = defs.resolve_asset_graph()
    keys = {tuple(key.path) for key in graph.get_all_asset_keys()}
    assert set(EXPECTED_ASSETS) <= keys

    # no op, check or dbt step queues on a pool: the warehouse lock (warehouse.warehouse_lock) serializes them
    dbt_keys = [dg.AssetKey(list(k)) for k in DBT_MARTS]
    assert {op.name for op in job.graph.iterate_op_defs() if op.pool} == set()
    series_check_keys = {k for k in graph.asset_check_keys if tuple(k.asset_key.path) == SERIES}
    assert {k.name for k in series_check_keys} == SERIES_CHECKS
    for checks_def in series_checks:
        assert checks_def.op.pool is None
    for assets_def in (analytics_copy, segment_series_daily, segment_growth_models):
        assert assets_def.op.pool is None

    # the resume sensor is on by default and starts the daily job
    sensor = defs.get_sensor_def("segment_growth_resume_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == JOB

    # the series are daily partitions; the models after them are one table each, not partitioned; all of
    # them backfill in a single run
    assert segment_series_daily.partitions_def is daily_partitions
    assert segment_growth_models.partitions_def is None
    for key in [dg.AssetKey(list(SERIES)), *dbt_keys]:
        node = graph.get(key)
        assert node.partitions_def is (daily_partitions if key == dg.AssetKey(list(SERIES)) else None), key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
    assert daily_partitions.timezone == TIMEZONE
    assert daily_partitions.start.date() == dt.date.fromisoformat(FIRST_PARTITION)
