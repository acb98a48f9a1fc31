"""The configuration as Dagster resources: read once from the documented variables, the key only by name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

from segment_pipeline.defs.ingest.assets import segments
from segment_pipeline.defs.resources import KlaviyoResource, WarehouseResource
from segment_pipeline.defs.transform.assets import DbtConfig, dbt_build_args
from tests.pipeline_helpers import API_KEY, resources

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_key_is_held_as_the_variable_name_and_the_rest_as_values(tmp_path):
    env = {"KLAVIYO_API_KEY": API_KEY, "KLAVIYO_TAGS": "Off", "SERIES_LOOKBACK_DAYS": "5", "WAREHOUSE_PATH": "w.db"}
    warehouse = WarehouseResource.from_env(env)
    klaviyo = KlaviyoResource.from_env(warehouse, env)

    assert isinstance(klaviyo.api_key, dg.EnvVar) and klaviyo.api_key == "KLAVIYO_API_KEY"
    assert API_KEY not in repr(klaviyo) and API_KEY not in repr(klaviyo.model_dump())
    assert klaviyo.tags == "off" and warehouse.lookback_days == 5
    assert warehouse.settings.warehouse_path == (Path.cwd() / "w.db").resolve()
    # without the variable the code still loads: the key is empty until a run needs it
    assert KlaviyoResource.from_env(warehouse, {}).api_key == ""


def test_a_run_without_the_key_fails_saying_how_to_get_one(make_simulator, tmp_path, monkeypatch):
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)
    sim = make_simulator(segment_count=3)
    result = dg.materialize([segments], resources=resources(sim, tmp_path), raise_on_error=False)

    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "KLAVIYO_API_KEY is not set: create a private API key in Klaviyo" in message


def test_dbt_gets_the_warehouse_through_constant_vars_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WAREHOUSE_PATH", raising=False)
    warehouse = WarehouseResource(warehouse_path=str(tmp_path / "w.duckdb"), duckdb_memory_limit="123MB")
    args = dbt_build_args(DbtConfig(), warehouse.settings)
    # the same vars on every run of a deployment, so dbt's partial parsing survives
    assert args == dbt_build_args(DbtConfig(), warehouse.settings)
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


def test_every_resource_field_names_a_variable_of_the_readme_table():
    readme = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    # the accounts file's fields, from its table in the README
    file_fields = set(re.findall(r"^\| `([a-z_.]+)` \| (?:yes|no) \|", readme, flags=re.MULTILINE))
    assert {"name", "timezone", "segments.is_starred"} <= file_fields
    for resource in (WarehouseResource, KlaviyoResource):
        for name, field in resource.model_fields.items():
            if name == "warehouse":
                continue  # the nested resource
            description = field.description or ""
            if description.startswith("accounts file: "):
                file_field = description.removeprefix("accounts file: ").split()[0].rstrip(",")
                assert file_field in file_fields, (
                    f"{resource.__name__}.{name} ({file_field}) is not in the file's table"
                )
                continue
            variable = description.split()[0].rstrip(",")
            assert variable in documented, f"{resource.__name__}.{name} ({variable}) is not in the README's table"
