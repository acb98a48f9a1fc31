"""The code location loads the way `dagster dev -w workspace.yaml` loads it, without any secret.

`dagster definitions validate` and the real webserver run as subprocesses from the repository root, with
KLAVIYO_API_KEY removed from their environment and DAGSTER_HOME pointing at a temporary copy of the project's
instance settings; the webserver is then asked over GraphQL what the UI would show. An in-process test
checks what GraphQL does not show directly: the pools, the sensors and the automation of the shared assets.
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
JOB = "ingest_default_job"
SCHEDULE = "ingest_default_daily"
STARTUP_TIMEOUT = 90

SERIES = ("klaviyo", "default", "segment_series_daily")
KLAVIYO_ASSETS = [
    ("klaviyo", "default", "segments"),
    ("klaviyo", "default", "segment_definitions"),
    ("klaviyo", "default", "accounts"),
    ("klaviyo", "default", "segment_tags"),
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
    env = {
        **os.environ,
        "KLAVIYO_TIMEZONE": TIMEZONE,
        "DAGSTER_HOME": str(dagster_home),
        # the first load fixes the account's history start in the state folder: a fresh one, here
        "PIPELINE_STATE_DIR": str(dagster_home / "state"),
    }
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
def webserver(webserver_process, dagster_home) -> Webserver:
    webserver_process.home = dagster_home
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
    # the account's job ingests; the shared models and publishing follow by automation, in no account's job
    for key in KLAVIYO_ASSETS:
        assert JOB in asset_nodes[key]["jobNames"], key
    for key in [*DBT_MARTS, ANALYTICS_COPY, GROWTH_CHART]:
        assert JOB not in asset_nodes[key]["jobNames"], key
    # the account's Klaviyo steps are in its pool (limited only where dagster.yaml sets pool limits); steps
    # take turns on the warehouse through its kernel lock, never a pool
    for key in KLAVIYO_ASSETS:
        assert asset_nodes[key]["pools"] == ["klaviyo_default"], (key, asset_nodes[key]["pools"])
    for key in [*DBT_MARTS, ANALYTICS_COPY]:
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
    # the first partition is the oldest day Klaviyo reported on when the account was first loaded (fixed in the
    # state folder), not Klaviyo's floor: a full backfill leaves no day missing
    first = (dt.date.fromisoformat(yesterday) - dt.timedelta(days=364)).isoformat()
    first_after = (dt.date.fromisoformat(yesterday_after) - dt.timedelta(days=364)).isoformat()
    assert keys[0] in {first, first_after}, keys[0]
    stored = (Path(_env(webserver.home)["PIPELINE_STATE_DIR"]) / "history_start" / "default.date").read_text()
    assert stored.strip() == keys[0]
    # the last partition is yesterday in the account's timezone: today is not finished
    assert keys[-1] in {yesterday, yesterday_after}, (keys[-1], yesterday)
    assert today not in keys and today_after not in keys
    assert len(keys) == len(set(keys)) <= 367
    assert keys == sorted(keys)
    expected_count = (dt.date.fromisoformat(keys[-1]) - dt.date.fromisoformat(keys[0])).days + 1
    assert len(keys) == expected_count  # one key per day, no gaps

    series_node = asset_nodes[SERIES]
    assert series_node["backfillPolicy"] == {"policyType": "SINGLE_RUN", "maxPartitionsPerRun": None}
    # the models and the publishing steps are not partitioned (the daily mart finds what changed by itself)
    for key in [*DBT_MARTS, ANALYTICS_COPY, GROWTH_CHART]:
        assert not asset_nodes[key]["isPartitioned"], key
    # the segments listing is not partitioned: every run refreshes all segments
    assert not asset_nodes[("klaviyo", "default", "segments")]["isPartitioned"]


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


def test_definitions_in_process(tmp_path):
    import dagster as dg

    from segment_pipeline.defs.automation import AUTOMATION_SENSOR, SHARED_BUILD
    from segment_pipeline.defs.deployment import build_definitions
    from segment_pipeline.defs.ingest.resume_sensor import SENSOR_NAME
    from segment_pipeline.settings import load_settings

    env = {"KLAVIYO_TIMEZONE": TIMEZONE, "PIPELINE_STATE_DIR": str(tmp_path / "state")}
    defs = build_definitions(load_settings(env))
    job = defs.resolve_job_def(JOB)
    series = defs.get_assets_def(dg.AssetKey(list(SERIES)))
    assert job.partitions_def == series.partitions_def
    assert series.partitions_def.timezone == TIMEZONE

    graph = defs.resolve_asset_graph()
    keys = {tuple(key.path) for key in graph.get_all_asset_keys()}
    assert set(EXPECTED_ASSETS) <= keys
    series_check_keys = {k for k in graph.asset_check_keys if tuple(k.asset_key.path) == SERIES}
    assert {k.name for k in series_check_keys} == SERIES_CHECKS

    # only the account's Klaviyo steps are in a pool (its own); the warehouse lock serializes the rest
    pools = {op.name: op.pool for op in job.graph.iterate_op_defs()}
    klaviyo_steps = {"klaviyo_default_segments", "klaviyo__default__segment_series_daily"}
    assert klaviyo_steps <= set(pools)
    assert {name for name, pool in pools.items() if pool} >= klaviyo_steps
    assert set(pools.values()) == {"klaviyo_default", None}
    for key in [*DBT_MARTS, ANALYTICS_COPY, GROWTH_CHART]:
        node = graph.get(dg.AssetKey(list(key)))
        assert node.partitions_def is None, key
        # built after the loads, once, by the automation sensor
        assert node.automation_condition == SHARED_BUILD, key

    # the resume sensor and the automation sensor are on by default
    for name in (SENSOR_NAME, AUTOMATION_SENSOR):
        assert defs.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def test_loading_the_code_reads_no_environment_at_import():
    """Importing the code location reads nothing: the settings are read when Dagster loads the definitions."""
    code = (
        "import os, sys; os.environ['KLAVIYO_TIMEZONE'] = 'Not/AZone'; "
        "import segment_pipeline.definitions as d; print('imported'); d.defs()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("imported"), result.stderr[-3000:]
    assert result.returncode != 0 and "KLAVIYO_TIMEZONE='Not/AZone' is not an IANA timezone name" in result.stderr
