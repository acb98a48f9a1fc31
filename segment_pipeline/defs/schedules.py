"""Each account's daily job and its schedule: one place for the cron and for what a job contains."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from ..config import DEFAULT_ACCOUNT_NAME
from .account_names import job_name, schedule_name

# 06:00 in the account's own timezone (its partitions'): the previous day is complete there and Klaviyo has
# had time to settle it. Accounts in other timezones run at their own 06:00.
LOCAL_HOUR = 6


def build_account_job(account_name: str, selection: dg.AssetSelection) -> UnresolvedAssetJobDefinition:
    """The account's job: `selection` is its segments and series, then the shared models and publishing."""
    label = "the account" if account_name == DEFAULT_ACCOUNT_NAME else f"account {account_name}"
    return dg.define_asset_job(
        name=job_name(account_name),
        selection=selection,
        description=(
            f"Refresh the segments of {label}, pull its daily series for the selected days (its own days, plus "
            "the lookback), rebuild the models, publish the analyst copy and draw the growth chart."
        ),
        # no executor here: the code location's (definitions.py) runs every step in one process
    )


def build_daily_schedule(account_name: str, job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """The account's job for yesterday, every day at 06:00 in the account's timezone."""
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=LOCAL_HOUR,
        name=schedule_name(account_name),
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )


# the single account's (a deployment without an accounts file): every asset of the code location
segment_growth_job = build_account_job(DEFAULT_ACCOUNT_NAME, dg.AssetSelection.all())
daily_schedule = build_daily_schedule(DEFAULT_ACCOUNT_NAME, segment_growth_job)
