"""Several Klaviyo accounts in one deployment, end to end through the real Dagster CLI and the simulator.

Three simulated accounts, each with its own key, timezone (Sydney is 10 or 11 hours east of UTC, Los Angeles
8 west), segments, report budget and quota. Each account's job runs in a process of its own, as the UI's
backfills and the schedules run them, and all of them at the same time. The tests read the real DuckDB file
and the Dagster instance, and compare with the simulator's ground truth for each account's own days.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from segment_pipeline.defs.account_names import asset_key, job_name
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .dagster_processes import job_execute, pipeline_env
from .pipeline_helpers import query

SPEED = 60.0
# name -> the simulator's settings of that account, and what the accounts file gives it
ACCOUNTS = {
    "sydney": {"timezone": "Australia/Sydney", "seed": 21, "segment_count": 7, "daily_limit": 200},
    "los_angeles": {"timezone": "US/Pacific", "seed": 22, "segment_count": 5, "daily_limit": 120},
    "london": {"timezone": "Europe/London", "seed": 23, "segment_count": 6, "daily_limit": 90},
}
DAYS = 70  # two report windows of 60 days for each account


def key_of(name: str) -> str:
    return f"pk_test_{name.replace('_', '')}0123456789abcdef"


def key_variable(name: str) -> str:
    return f"KLAVIYO_API_KEY_{name.upper()}"


def start_simulator(make_simulator, **per_account_overrides):
    configs = {
        name: {
            "api_key": key_of(name),
            "seed": spec["seed"],
            "segment_count": spec["segment_count"],
            "timezone": spec["timezone"],
            **per_account_overrides.get(name, {}),
        }
        for name, spec in ACCOUNTS.items()
    }
    return make_simulator(accounts=configs, speed=SPEED)


def write_accounts_file(path: Path, **per_account_fields) -> Path:
    entries = [
        {
            "name": name,
            "api_key_env": key_variable(name),
            "timezone": spec["timezone"],
            "report_rate_per_minute": 2 * SPEED,
            "report_daily_limit": spec["daily_limit"],
            **per_account_fields.get(name, {}),
        }
        for name, spec in ACCOUNTS.items()
    ]
    path.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=False), encoding="utf-8")
    return path


def deployment_env(sim, work: Path, **per_account_fields) -> dict[str, str]:
    accounts_file = write_accounts_file(work / "accounts.yaml", **per_account_fields)
    return pipeline_env(
        sim,
        work,
        KLAVIYO_ACCOUNTS_FILE=str(accounts_file),
        **{key_variable(name): key_of(name) for name in ACCOUNTS},
        # the simulator's windows are SPEED times shorter: count the budget over as short a day
        KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS=str(86400 / SPEED),
        KLAVIYO_STEADY_WINDOW_SECONDS=str(60 / SPEED),
    )


def local_range(name: str) -> tuple[dt.date, dt.date]:
    """The last DAYS days of the account, ending yesterday in its own timezone."""
    yesterday = dt.datetime.now(ZoneInfo(ACCOUNTS[name]["timezone"])).date() - dt.timedelta(days=1)
    return yesterday - dt.timedelta(days=DAYS - 1), yesterday


def start_backfills(env, names=tuple(ACCOUNTS)):
    """Every account's job for its own range, all at once, each in its own process."""
    return {name: job_execute(env, *local_range(name), job=job_name(name)) for name in names}


def truth(sim, name: str, first: dt.date, last: dt.date) -> dict[tuple[str, dt.date], tuple[int, int, int]]:
    account = sim.accounts[name].account
    return {
        (segment.id, row["date"]): (row["total_members"], row["members_added"], row["members_removed"])
        for segment in account.segments()
        for row in account.series(segment.id, first, last)
    }


def loaded(path: Path, account_id: str, first: dt.date, last: dt.date):
    rows = query(
        path,
        "select segment_id, date, total_members, members_added, members_removed from klaviyo.segment_series_daily "
        "where account_id = ? and date between ? and ?",
        [account_id, first, last],
    )
    return {(segment_id, day): (total, added, removed) for segment_id, day, total, added, removed in rows}


def materialized_days(instance: dg.DagsterInstance, name: str) -> set[str]:
    return set(instance.get_materialized_partitions(asset_key(name, "segment_series_daily")))


def expected_days(name: str) -> set[str]:
    first, last = local_range(name)
    return {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}


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

    series = [entry for entry in sim.requests() if entry.path == SEGMENT_SERIES_PATH and entry.status == 200]
    sydney_first_answer = min(e.started for e in series if e.account == "sydney")
    assert all(e.started < sydney_first_answer for e in series if e.account in others)

    warehouse = tmp_path / "warehouse.duckdb"
    for name in ACCOUNTS:
        first, last = local_range(name)
        expected = truth(sim, name, first, last)
        assert len(expected) == ACCOUNTS[name]["segment_count"] * DAYS
        assert loaded(warehouse, sim.accounts[name].account_id, first, last) == expected, name

    # every account's short name is stored with its Klaviyo account id, and the analyst copy has them all
    names = dict(query(tmp_path / "analytics.duckdb", "select account_id, account_name from klaviyo.accounts"))
    assert names == {sim.accounts[name].account_id: name for name in ACCOUNTS}

    # each account's own budget: its ledger counts only its requests, against its own limit
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for name in ACCOUNTS:
            assert materialized_days(instance, name) == expected_days(name)
            event = instance.get_latest_materialization_event(asset_key(name, "segment_series_daily"))
            metadata = event.asset_materialization.metadata
            sent = sim.count(path=SEGMENT_SERIES_PATH, account=name, status=200)
            assert metadata["account"].value == name
            ledger = json.loads((tmp_path / "state" / "report_ledgers" / f"{sim.accounts[name].account_id}.json").read_text())
            assert ledger, name
            left = metadata["report_requests_left_today"].value
            assert left <= ACCOUNTS[name]["daily_limit"] - sent


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
    assert "account 'london'" in london.output and "API key" in london.output, london.output[-4000:]
    assert key_of("london") not in london.output
    for name, run in others.items():
        assert run.finish(timeout=240) == 0, run.output[-4000:]

    # the others are complete and published; London keeps the response it was sent before the revocation
    analytics = tmp_path / "analytics.duckdb"
    for name in others:
        first_day, last_day = local_range(name)
        assert loaded(analytics, sim.accounts[name].account_id, first_day, last_day) == truth(
            sim, name, first_day, last_day
        )
    kept = loaded(tmp_path / "warehouse.duckdb", sim.accounts["london"].account_id, first, last)
    assert kept and set(kept.items()) <= set(truth(sim, "london", first, last).items())
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert materialized_days(instance, "london") == set()
        for name in others:
            assert materialized_days(instance, name) == expected_days(name)


def test_segment_filters_send_requests_only_for_the_chosen_segments(make_simulator, tmp_path):
    sim = start_simulator(make_simulator)
    env = deployment_env(
        sim,
        tmp_path,
        sydney={"segments": {"is_starred": False}},
        los_angeles={"segments": {"name_matches": ["[a-m]*"]}},
    )
    assert all(run.finish(timeout=240) == 0 for run in start_backfills(env).values())

    chosen = {
        "sydney": {s.id for s in sim.accounts["sydney"].account.segments() if not s.is_starred},
        "los_angeles": {
            s.id for s in sim.accounts["los_angeles"].account.segments() if s.name[:1].lower() in "abcdefghijklm"
        },
        "london": {s.id for s in sim.accounts["london"].account.segments()},
    }
    assert chosen["sydney"] and chosen["los_angeles"]
    for name, ids in chosen.items():
        every_id = {s.id for s in sim.accounts[name].account.segments()}
        sent = set()
        for entry in sim.requests():
            if entry.path == SEGMENT_SERIES_PATH and entry.account == name:
                body = json.dumps(entry.json)
                sent |= {segment_id for segment_id in every_id if segment_id in body}
        assert sent == ids, name
        stored = query(
            tmp_path / "warehouse.duckdb",
            "select distinct segment_id from klaviyo.segment_series_daily where account_id = ?",
            [sim.accounts[name].account_id],
        )
        assert {row[0] for row in stored} == ids, name
