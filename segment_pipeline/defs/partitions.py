"""Daily partitions in a Klaviyo account's own days: one definition per account (its timezone).

`daily_partitions` is the single account's (KLAVIYO_TIMEZONE); each account of an accounts file gets
`account_partitions(its timezone)`. The start is fixed at Klaviyo's first day of segment
report data: a start computed from "today" would differ between processes that load the code at different
times. Partitions older than a year stay visible but are refused at run time, before any request, because
the API refuses them. With the default end offset the last partition is yesterday: today is not finished.
"""

import dagster as dg

from ..config import configured_timezone
from ..klaviyo.limits import REPORTING_DATA_FLOOR


def account_partitions(timezone: str) -> dg.DailyPartitionsDefinition:
    """Days in `timezone` from Klaviyo's first day of segment report data."""
    return dg.DailyPartitionsDefinition(start_date=REPORTING_DATA_FLOOR.isoformat(), timezone=timezone)


daily_partitions = account_partitions(configured_timezone())
