"""The definitions an accounts file makes: names, partitions and schedules in each account's own days, the
dbt models downstream of every account, the resume sensor per account, and the failures that name the account."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid

import dagster as dg
import pytest
import yaml

from segment_pipeline.defs.account_names import asset_key, job_name, resource_key, schedule_name
from segment_pipeline.defs.automation import SHARED_BUILD
from segment_pipeline.defs.deployment import build_definitions
from segment_pipeline.defs.ingest.resume_sensor import SENSOR_NAME
from segment_pipeline.defs.ingest.series_results import (
    KLAVIYO_ACCOUNT_TAG,
    RANGE_TAG,
    RESUME_AT_TAG,
    RESUMES_TAG,
    UNFINISHED_TAG,
)
from segment_pipeline.defs.publish.assets import ANALYTICS_COPY_KEY
from segment_pipeline.settings import ACCOUNTS_FILE_ENV, load_settings

from .pipeline_helpers import API_KEY, SEGMENTS, materialize

ACCOUNTS_YAML = {
    "accounts": [
        {"name": "brand_syd", "api_key_env": "KEY_SYD", "timezone": "Australia/Sydney", "report_daily_limit": 100},
        {"name": "brand_la", "api_key_env": "KEY_LA", "timezone": "US/Pacific", "segments": {"is_starred": True}},
    ]
}
ENV = {"KEY_SYD": "pk_test_syd0000000000000000", "KEY_LA": "pk_test_la00000000000000000"}
SERIES = "segment_series_daily"


def write_accounts(tmp_path, accounts: list[dict]):
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump({"accounts": accounts}), encoding="utf-8")
    return path


@pytest.fixture
def defs(tmp_path):
    path = write_accounts(tmp_path, ACCOUNTS_YAML["accounts"])
    env = {
        **ENV,
        ACCOUNTS_FILE_ENV: str(path),
        "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"),
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
    }
    return build_definitions(load_settings(env))


def test_each_account_has_its_days_job_schedule_resource_and_the_models_follow_all(defs):
    repository = defs.get_repository_def()
    for name, timezone in (("brand_syd", "Australia/Sydney"), ("brand_la", "US/Pacific")):
        job = repository.get_job(job_name(name))
        assert job.partitions_def.timezone == timezone
        assert asset_key(name, SERIES) in job.asset_layer.selected_asset_keys
        schedule = repository.get_schedule_def(schedule_name(name))
        # 06:00 in the account's own timezone
        assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * *", timezone)
        series = repository.asset_graph.get(asset_key(name, SERIES))
        assert series.group_name == f"klaviyo_{name}"
    # an account's job loads that account only; the shared models and the copy follow every account's loads
    # by their automation condition
    syd = repository.get_job(job_name("brand_syd")).asset_layer.selected_asset_keys
    assert asset_key("brand_la", SERIES) not in syd
    assert all(key.path[:2] == ["klaviyo", "brand_syd"] for key in syd)
    for shared in (dg.AssetKey(["marts", "segment_growth_daily"]), ANALYTICS_COPY_KEY):
        assert repository.asset_graph.get(shared).automation_condition == SHARED_BUILD
    staging = repository.asset_graph.get(dg.AssetKey(["staging", "stg_klaviyo__segment_series_daily"]))
    assert staging.parent_keys == {asset_key(n, SERIES) for n in ("brand_syd", "brand_la")}
    # no stray unprefixed raw-table assets: every dependency is an asset of the code location
    assert dg.AssetKey(["klaviyo", SERIES]) not in repository.asset_graph.get_all_asset_keys()

    la = defs.resources[resource_key("brand_la")].account
    assert (la.report_daily_limit, la.timezone, la.segments.is_starred) == (225, "US/Pacific", True)
    assert defs.resources[resource_key("brand_syd")].account.report_daily_limit == 100
    # the key is only its variable's name: its value is read when a run starts, never held by the definitions
    assert la.api_key_env == "KEY_LA"
    assert ENV["KEY_LA"] not in repr(defs.resources[resource_key("brand_la")])


def cut_short(instance: dg.DagsterInstance, name: str, resume_at: dt.datetime) -> str:
    """A run of `name`'s series that the budget cut short, as its tags record it; returns its id."""
    run_id = str(uuid.uuid4())
    tags = {
        UNFINISHED_TAG: name,
        RANGE_TAG: "2026-01-01..2026-03-31",
        RESUME_AT_TAG: resume_at.isoformat(timespec="seconds"),
        KLAVIYO_ACCOUNT_TAG: f"id_{name}",
    }
    instance.add_run(
        dg.DagsterRun(job_name=job_name(name), run_id=run_id, tags=tags, status=dg.DagsterRunStatus.FAILURE)
    )
    return run_id


def test_the_resume_sensor_resumes_each_accounts_own_series(defs):
    sensor = defs.get_sensor_def(SENSOR_NAME)
    resume_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with dg.DagsterInstance.ephemeral() as instance:
        cut = {name: cut_short(instance, name, resume_at) for name in ("brand_syd", "brand_la")}
        with dg.build_sensor_context(instance=instance) as context:
            result = sensor(context)
    assert sorted((r.asset_selection, r.tags[RESUMES_TAG]) for r in result.run_requests) == [
        ([asset_key("brand_la", SERIES)], cut["brand_la"]),
        ([asset_key("brand_syd", SERIES)], cut["brand_syd"]),
    ]
    for request in result.run_requests:
        assert request.tags["dagster/asset_partition_range_start"] == "2026-01-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-03-31"


def test_a_timezone_the_account_does_not_report_in_fails_naming_the_account_and_the_fix(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, speed=60.0, timezone="US/Eastern")
    path = write_accounts(tmp_path, [{"name": "brand_x", "api_key_env": "KEY_X", "timezone": "Asia/Tokyo"}])
    env = {ACCOUNTS_FILE_ENV: str(path), "KEY_X": API_KEY}
    result = materialize([SEGMENTS], sim, tmp_path, account="brand_x", env=env, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert failure.description.startswith("account 'brand_x'")
    assert "timezone: US/Eastern" in failure.description and str(path) in failure.description


def test_two_entries_for_one_klaviyo_account_are_refused_not_merged(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, speed=60.0, timezone="US/Eastern")
    rate = 2 * sim.config.speed
    brand_a = {"name": "brand_a", "api_key_env": "KEY_A", "timezone": "US/Eastern", "report_rate_per_minute": rate}
    path = write_accounts(tmp_path, [brand_a])
    env = {ACCOUNTS_FILE_ENV: str(path), "KEY_A": API_KEY}
    assert materialize([SEGMENTS], sim, tmp_path, account="brand_a", env=env).success
    # a second entry whose key belongs to the same Klaviyo account (brand_a's key has changed meanwhile)
    brand_b = {**brand_a, "name": "brand_b", "api_key_env": "KEY_B"}
    write_accounts(tmp_path, [brand_a, brand_b])
    env = {**env, "KEY_A": "pk_test_other0000000000000", "KEY_B": API_KEY}
    result = materialize([SEGMENTS], sim, tmp_path, account="brand_b", env=env, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "already loaded as account 'brand_a'" in failure.description


def test_a_bad_accounts_file_stops_the_code_location_naming_the_line(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "accounts:\n  - name: brand_a\n    api_key_env: KEY_SYD\n    timezone: Australia/Sidney\n", encoding="utf-8"
    )
    env = {**os.environ, **ENV, ACCOUNTS_FILE_ENV: str(path), "DAGSTER_HOME": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "segment_pipeline.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode != 0
    output = finished.stdout + finished.stderr
    assert f"{path}:4:" in output and "'Australia/Sidney' is not an IANA timezone name" in output, output[-3000:]
