"""The settings as Dagster resources: built once from the documented variables, the key held only by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from segment_pipeline.config import StorageSettings
from segment_pipeline.defs.deployment import build_definitions
from segment_pipeline.defs.transform.assets import DbtConfig, dbt_build_args
from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.settings import load_settings
from segment_pipeline.warehouse import Warehouse
from tests.pipeline_helpers import API_KEY, SEGMENTS, materialize


def test_the_resources_hold_the_settings_and_the_key_only_by_its_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {
        "KLAVIYO_API_KEY": API_KEY,
        "KLAVIYO_TAGS": "Off",
        "SERIES_LOOKBACK_DAYS": "5",
        "WAREHOUSE_PATH": "w.db",
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
        "KLAVIYO_HISTORY_START": "2025-01-01",
    }
    resources = build_definitions(load_settings(env)).resources
    klaviyo, warehouse = resources["klaviyo_default"], resources["warehouse"]

    assert isinstance(klaviyo, KlaviyoAccess) and isinstance(warehouse, Warehouse)
    assert klaviyo.account.api_key_env == "KLAVIYO_API_KEY"
    assert API_KEY not in repr(resources)
    assert klaviyo.settings.klaviyo.tags == "off" and klaviyo.lookback_days == 5
    assert warehouse.path == (tmp_path / "w.db").resolve()
    # without the variable the code still loads: the key is read when a run needs it
    without_key = {name: value for name, value in env.items() if name != "KLAVIYO_API_KEY"}
    assert "klaviyo_default" in build_definitions(load_settings(without_key)).resources


def test_a_run_without_the_key_fails_saying_how_to_get_one(make_simulator, tmp_path):
    sim = make_simulator(segment_count=3)
    result = materialize([SEGMENTS], sim, tmp_path, env={"KLAVIYO_API_KEY": ""}, raise_on_error=False)

    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "KLAVIYO_API_KEY is not set, so account 'default' has no API key: create a private API key" in message
    assert sim.count() == 0


def test_dbt_gets_the_warehouse_through_constant_vars_not_the_environment(tmp_path):
    storage = StorageSettings.resolved(warehouse_path=tmp_path / "w.duckdb", duckdb_memory_limit="123MB")
    args = dbt_build_args(DbtConfig(), storage)
    # the same vars on every run of a deployment, so dbt's partial parsing survives
    assert args == dbt_build_args(DbtConfig(), storage)
    assert args[:2] == ["build", "--vars"] and str(tmp_path / "w.duckdb") in args[2] and "123MB" in args[2]

    project = Path(__file__).resolve().parents[1] / "dbt_project"
    dbt = Path(sys.executable).parent / "dbt"
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_PATH", "DUCKDB_MEMORY_LIMIT")}
    # `dbt debug` opens the profile's database: the file named in --vars (created on connect), not the default
    debug = [str(dbt), "debug", "--project-dir", str(project), "--profiles-dir", str(project), "--vars", args[2]]
    completed = subprocess.run(debug, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-2000:]
    assert (tmp_path / "w.duckdb").is_file()
    assert f"path: {tmp_path / 'w.duckdb'}" in completed.stdout


def test_loads_keep_to_their_own_duckdb_memory_limit(tmp_path):
    env = {
        "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"),
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
        "DUCKDB_MEMORY_LIMIT": "200MB",
        "DUCKDB_LOAD_MEMORY_LIMIT": "40MB",
    }
    storage = load_settings(env).storage
    assert (storage.duckdb_memory_limit, storage.duckdb_load_memory_limit) == ("200MB", "40MB")
    # the connection dlt's load opens, asked what it was given (DuckDB states it in MiB)
    with Warehouse(storage).pipeline("klaviyo_series").sql_client() as client:
        ((limit,),) = client.execute_sql("select current_setting('memory_limit')")
    assert limit == "38.1 MiB"
    assert load_settings({}).storage.duckdb_load_memory_limit == "64MB"
