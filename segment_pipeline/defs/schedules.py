"""The daily job and its schedule: one place for the cron and for what the job contains."""

import dagster as dg

from .ingest.assets import segment_series_daily, segments
from .publish.assets import analytics_copy, growth_chart
from .transform.assets import segment_growth_models

segment_growth_job = dg.define_asset_job(
    name="segment_growth_job",
    selection=dg.AssetSelection.assets(
        segments, segment_series_daily, segment_growth_models, analytics_copy, growth_chart
    ),
    description=(
        "Refresh segments, pull the daily series for the selected days (plus the lookback), rebuild the "
        "models, publish the analyst copy and draw the growth chart."
    ),
    # every step uses the one DuckDB file in turn, so there is nothing to run in parallel; one process
    # also saves loading the code again for each step
    executor_def=dg.in_process_executor,
)

# 06:00 in the account's timezone: the previous day is complete and Klaviyo has had time to settle it.
daily_schedule = dg.build_schedule_from_partitioned_job(
    segment_growth_job,
    hour_of_day=6,
    name="segment_growth_daily_schedule",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
