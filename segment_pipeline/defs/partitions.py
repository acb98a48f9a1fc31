"""The one daily partitions definition, shared by the series and the dbt models.

Days are the Klaviyo account's days (KLAVIYO_TIMEZONE). The start is fixed at Klaviyo's first day of segment
report data: a start computed from "today" would differ between processes that load the code at different
times. Partitions older than a year stay visible but are refused at run time, before any request, because
the API refuses them. With the default end offset the last partition is yesterday: today is not finished.
"""

import dagster as dg

from ..config import configured_timezone
from ..klaviyo.limits import REPORTING_DATA_FLOOR

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=REPORTING_DATA_FLOOR.isoformat(),
    timezone=configured_timezone(),
)
