"""Helpers for the tests of several Klaviyo accounts, end to end through the real Dagster CLI and the simulator.

Three simulated accounts, each with its own key, timezone (Sydney is 10 or 11 hours east of UTC, Los Angeles
8 west), segments, report budget and quota. Each account's job runs in a process of its own, as the UI's
backfills and the schedules run them, and all of them at the same time. The tests (test_many_accounts_*.py,
one scenario a file so pytest-xdist runs them side by side) read the real DuckDB file and the Dagster
instance, and compare with the simulator's ground truth for each account's own days.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import yaml

from segment_pipeline.defs.account_names import asset_key, job_name

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
        for segment in account.segments
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
