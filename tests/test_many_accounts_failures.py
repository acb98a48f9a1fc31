"""One account's revoked key fails only that account, with a message naming it."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg

from segment_pipeline.defs.account_names import job_name
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .dagster_processes import job_execute
from .many_accounts import (
    deployment_env,
    expected_days,
    key_of,
    loaded,
    local_range,
    materialized_days,
    start_backfills,
    start_simulator,
    truth,
)


def test_a_key_revoked_mid_backfill_fails_only_that_account_naming_it(make_simulator, tmp_path):
    sim = start_simulator(make_simulator)
    # London fetches a year at one request every 6 seconds, so its key can be revoked between two requests
    env = deployment_env(sim, tmp_path, london={"report_rate_per_minute": 10.0})
    first, last = dt.date.today() - dt.timedelta(days=300), local_range("london")[1]
    london = job_execute(env, first, last, job=job_name("london"))
    others = start_backfills(env, ("sydney", "los_angeles"))

    deadline = time.monotonic() + 180
    while sim.count(path=SEGMENT_SERIES_PATH, account="london", status=200) < 1:
        assert london.process.poll() is None, london.output[-4000:]
        assert time.monotonic() < deadline, "london sent no report request"
        time.sleep(0.05)
    sim.revoke_key("london")

    assert london.finish(timeout=240) != 0
    assert "account 'london'" in london.output and "check that KLAVIYO_API_KEY_LONDON holds" in london.output, (
        london.output[-4000:]
    )
    assert key_of("london") not in london.output
    for run in others.values():
        assert run.finish(timeout=240) == 0, run.output[-4000:]

    # the others are complete (their account jobs ingest; the shared build follows by automation, not here);
    # London keeps the response it was sent before the revocation
    warehouse = tmp_path / "warehouse.duckdb"
    for name in others:
        first_day, last_day = local_range(name)
        assert loaded(warehouse, sim.accounts[name].account_id, first_day, last_day) == truth(
            sim, name, first_day, last_day
        )
    kept = loaded(tmp_path / "warehouse.duckdb", sim.accounts["london"].account_id, first, last)
    assert kept and set(kept.items()) <= set(truth(sim, "london", first, last).items())
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert materialized_days(instance, "london") == set()
        for name in others:
            assert materialized_days(instance, name) == expected_days(name)
