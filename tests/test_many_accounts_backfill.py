"""A backfill of every account at once: exact rows in each account's own days, and a spent quota delays no other."""

from __future__ import annotations

import json

import dagster as dg

from segment_pipeline.defs.account_names import asset_key
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .many_accounts import (
    ACCOUNTS,
    DAYS,
    deployment_env,
    expected_days,
    loaded,
    local_range,
    materialized_days,
    start_backfills,
    start_simulator,
    truth,
)
from .pipeline_helpers import query


def test_a_backfill_of_every_account_is_exact_per_local_day_and_one_spent_quota_delays_no_other(
    make_simulator, tmp_path
):
    # Sydney's report quota at Klaviyo is spent before the backfill starts: its run waits for the quota
    # window to end (KLAVIYO_MAX_RETRY_AFTER lets it) while the other accounts fetch, load and publish
    sim = start_simulator(make_simulator, sydney={"quota_day_seconds": 75.0})
    sim.exhaust_report_quota("sydney")
    env = {**deployment_env(sim, tmp_path), "KLAVIYO_MAX_RETRY_AFTER": "200"}

    runs = start_backfills(env)
    others = [name for name in ACCOUNTS if name != "sydney"]
    for name in others:
        assert runs[name].finish(timeout=240) == 0, runs[name].output[-4000:]
    # the others are done while Sydney still waits out its quota: they never queued behind it
    assert runs["sydney"].process.poll() is None, "the spent quota did not make sydney's run wait"
    assert runs["sydney"].finish(timeout=300) == 0, runs["sydney"].output[-4000:]

    series = [entry for entry in sim.requests if entry.path == SEGMENT_SERIES_PATH and entry.status == 200]
    sydney_first_answer = min(e.started for e in series if e.account == "sydney")
    assert all(e.started < sydney_first_answer for e in series if e.account in others)

    warehouse = tmp_path / "warehouse.duckdb"
    for name in ACCOUNTS:
        first, last = local_range(name)
        expected = truth(sim, name, first, last)
        assert len(expected) == ACCOUNTS[name]["segment_count"] * DAYS
        assert loaded(warehouse, sim.accounts[name].account_id, first, last) == expected, name

    # every account's short name is stored with its Klaviyo account id (the account jobs load the warehouse;
    # the shared build that copies it for analysts follows by automation, see test_demo)
    names = dict(query(warehouse, "select account_id, account_name from klaviyo.accounts"))
    assert names == {sim.accounts[name].account_id: name for name in ACCOUNTS}

    # each account's own budget: its ledger counts only its requests, against its own limit
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for name in ACCOUNTS:
            assert materialized_days(instance, name) == expected_days(name)
            event = instance.get_latest_materialization_event(asset_key(name, "segment_series_daily"))
            metadata = event.asset_materialization.metadata
            sent = sim.count(path=SEGMENT_SERIES_PATH, account=name, status=200)
            assert metadata["account"].value == name
            ledger = json.loads(
                (tmp_path / "state" / "report_ledgers" / f"{sim.accounts[name].account_id}.json").read_text()
            )
            assert ledger, name
            left = metadata["run_report_requests_left_today"].value
            if name == "sydney":
                # its refused attempts count against its own budget too, never against another's
                assert left <= ACCOUNTS[name]["daily_limit"] - sent
            else:
                # the series step's figure: its own limit less its own series requests, nothing of the others'
                assert (
                    left
                    == ACCOUNTS[name]["daily_limit"] - metadata["run_report_requests_sent"].value
                    == (ACCOUNTS[name]["daily_limit"] - sent)
                )
