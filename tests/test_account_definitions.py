"""The definitions an accounts file makes: names, partitions and schedules in each account's own days, the
dbt models downstream of every account, the sensor per account, and the failures that name the account."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from segment_pipeline.accounts import read_accounts_file
from segment_pipeline.defs.account_names import asset_key, job_name, resource_key, schedule_name
from segment_pipeline.defs.deployment import build_deployment
from segment_pipeline.defs.ingest.assets import build_ingest_assets
from segment_pipeline.defs.ingest.pending import PendingRange, record_unfinished
from segment_pipeline.defs.partitions import account_partitions
from segment_pipeline.defs.resources import KlaviyoResource, WarehouseResource

from .pipeline_helpers import API_KEY

ACCOUNTS_YAML = {
    "accounts": [
        {"name": "brand_syd", "api_key_env": "KEY_SYD", "timezone": "Australia/Sydney", "report_daily_limit": 100},
        {"name": "brand_la", "api_key_env": "KEY_LA", "timezone": "US/Pacific", "segments": {"is_starred": True}},
    ]
}
ENV = {"KEY_SYD": "pk_test_syd0000000000000000", "KEY_LA": "pk_test_la00000000000000000"}


@pytest.fixture
def deployment(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(ACCOUNTS_YAML), encoding="utf-8")
    accounts = read_accounts_file(path, ENV)
    warehouse = WarehouseResource(warehouse_path=str(tmp_path / "w.duckdb"), state_dir=str(tmp_path / "state"))
    built = build_deployment(warehouse, accounts, {**ENV, "KLAVIYO_ACCOUNTS_FILE": str(path)})
    defs = dg.Definitions(
        assets=built.assets,
        asset_checks=built.asset_checks,
        jobs=built.jobs,
        schedules=built.schedules,
        sensors=built.sensors,
        resources={**built.resources, "warehouse": warehouse, "dbt": dg.ResourceDefinition.none_resource()},
    )
    return built, defs, warehouse


def test_each_account_has_its_days_job_schedule_resource_and_the_models_follow_all(deployment):
    built, defs, _ = deployment
    repository = defs.get_repository_def()
    for name, timezone in (("brand_syd", "Australia/Sydney"), ("brand_la", "US/Pacific")):
        job = repository.get_job(job_name(name))
        assert job.partitions_def.timezone == timezone
        assert asset_key(name, "segment_series_daily") in job.asset_layer.selected_asset_keys
        schedule = repository.get_schedule_def(schedule_name(name))
        # 06:00 in the account's own timezone
        assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * *", timezone)
        series = repository.asset_graph.get(asset_key(name, "segment_series_daily"))
        assert series.group_name == f"klaviyo_{name}"
    # the other account's assets are not in an account's job; the shared models and the copy are in both
    syd = repository.get_job(job_name("brand_syd")).asset_layer.selected_asset_keys
    assert asset_key("brand_la", "segment_series_daily") not in syd
    assert dg.AssetKey(["marts", "segment_growth_daily"]) in syd and dg.AssetKey(["analytics", "warehouse_copy"]) in syd
    staging = repository.asset_graph.get(dg.AssetKey(["staging", "stg_klaviyo__segment_series_daily"]))
    assert staging.parent_keys == {asset_key(n, "segment_series_daily") for n in ("brand_syd", "brand_la")}
    # no stray unprefixed raw-table assets: every dependency is an asset of the code location
    assert dg.AssetKey(["klaviyo", "segment_series_daily"]) not in repository.asset_graph.get_all_asset_keys()

    la = built.resources[resource_key("brand_la")]
    assert (la.report_daily_limit, la.timezone, la.segment_filter.is_starred) == (225, "US/Pacific", True)
    assert built.resources[resource_key("brand_syd")].report_daily_limit == 100
    # the key is the variable's EnvVar: its value is read when a run starts, never stored in the definitions
    assert la.api_key == dg.EnvVar("KEY_LA")
    assert ENV["KEY_LA"] not in repr(la)


def test_the_resume_sensor_starts_each_accounts_own_job(deployment, tmp_path, monkeypatch):
    built, _, warehouse = deployment
    for variable, key in ENV.items():
        monkeypatch.setenv(variable, key)
    now = dt.datetime.now(dt.UTC)
    for name in ("brand_syd", "brand_la"):
        record_unfinished(
            built.resources[resource_key(name)].pending_path,
            PendingRange(
                account_id=f"id_{name}",
                account_name=name,
                start="2026-01-01",
                end="2026-03-31",
                requests_total=4,
                requests_done=1,
                resume_at=(now - dt.timedelta(minutes=1)).isoformat(timespec="seconds"),
                expected_finish=now.isoformat(timespec="seconds"),
                updated_at=(now - dt.timedelta(minutes=2)).isoformat(timespec="seconds"),
            ),
        )
    assert (tmp_path / "state" / "series_pending" / "brand_la.json").is_file()
    (sensor,) = built.sensors
    with (
        dg.DagsterInstance.ephemeral() as instance,
        dg.build_sensor_context(instance=instance, resources={**built.resources, "warehouse": warehouse}) as context,
    ):
        requests = sensor(context)
    assert sorted((r.job_name, r.tags["segment_pipeline/resumes"]) for r in requests) == [
        (job_name("brand_la"), "brand_la:2026-01-01...2026-03-31"),
        (job_name("brand_syd"), "brand_syd:2026-01-01...2026-03-31"),
    ]


def _account_resources(sim, tmp_path, name: str, timezone: str, others=()):
    path = tmp_path / "accounts.yaml"
    warehouse = WarehouseResource(
        warehouse_path=str(tmp_path / "w.duckdb"),
        analytics_path=str(tmp_path / "a.duckdb"),
        state_dir=str(tmp_path / "state"),
    )
    klaviyo = KlaviyoResource(
        warehouse=warehouse,
        account_name=name,
        timezone=timezone,
        accounts_file=str(path),
        other_account_names=list(others),
        api_key=API_KEY,
        base_url=sim.base_url,
        report_rate_per_minute=2 * sim.config.speed,
    )
    return {resource_key(name): klaviyo, "warehouse": warehouse}


def test_a_timezone_the_account_does_not_report_in_fails_naming_the_account_and_the_fix(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, speed=60.0, timezone="US/Eastern")
    segments, _ = build_ingest_assets("brand_x", account_partitions("Asia/Tokyo"))
    result = dg.materialize(
        [segments], resources=_account_resources(sim, tmp_path, "brand_x", "Asia/Tokyo"), raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "account 'brand_x'" in failure.description
    assert "timezone: US/Eastern" in failure.description and str(tmp_path / "accounts.yaml") in failure.description


def test_two_entries_for_one_klaviyo_account_are_refused_not_merged(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, speed=60.0, timezone="US/Eastern")
    first, _ = build_ingest_assets("brand_a", account_partitions("US/Eastern"))
    assert dg.materialize([first], resources=_account_resources(sim, tmp_path, "brand_a", "US/Eastern")).success
    # a second entry whose key belongs to the same Klaviyo account
    second, _ = build_ingest_assets("brand_b", account_partitions("US/Eastern"))
    result = dg.materialize(
        [second],
        resources=_account_resources(sim, tmp_path, "brand_b", "US/Eastern", others=["brand_a"]),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "already loaded as account 'brand_a'" in failure.description


def test_a_bad_accounts_file_stops_the_code_location_naming_the_line(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "accounts:\n  - name: brand_a\n    api_key_env: KEY_SYD\n    timezone: Australia/Sidney\n", encoding="utf-8"
    )
    env = {**os.environ, **ENV, "KLAVIYO_ACCOUNTS_FILE": str(path), "DAGSTER_HOME": str(tmp_path)}
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
