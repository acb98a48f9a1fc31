"""Each account's ingestion job and its daily schedule: one place for the cron and for what a job contains."""

from __future__ import annotations

import dagster as dg

from .account_names import ACCOUNT_TAG, job_name, schedule_name

# 06:00 in the account's own timezone (its partitions'): the previous day is complete there and Klaviyo has
# had time to settle it. Accounts in other timezones run at their own 06:00.
LOCAL_HOUR = 6


def build_account_job(account_name: str, selection: dg.AssetSelection):
    """The account's job: its segments and its series for the selected days (the models follow by automation)."""
    return dg.define_asset_job(
        name=job_name(account_name),
        selection=selection,
        tags={ACCOUNT_TAG: account_name},
        description=(
            f"Refresh the segments of account {account_name!r} and pull its daily series for the selected days (its "
            "own days, plus the lookback). The shared models, analyst copy and report follow by automation."
        ),
    )


def build_daily_schedule(account_name: str, job) -> dg.ScheduleDefinition:
    """The account's job for yesterday, every day at 06:00 in the account's timezone."""
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=LOCAL_HOUR,
        name=schedule_name(account_name),
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
