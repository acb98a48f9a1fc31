"""The daily job and its schedule: one place for the cron and for what the job contains."""

import dagster as dg

segment_growth_job = dg.define_asset_job(
    name="segment_growth_job",
    # every asset of the code location (definitions.py lists them); their checks come along
    selection=dg.AssetSelection.all(),
    description=(
        "Refresh segments, pull the daily series for the selected days (plus the lookback), rebuild the "
        "models, publish the analyst copy and draw the growth chart."
    ),
    # no executor here: the code location's (definitions.py) runs every step in one process
)

# 06:00 in the account's timezone: the previous day is complete and Klaviyo has had time to settle it.
daily_schedule = dg.build_schedule_from_partitioned_job(
    segment_growth_job,
    hour_of_day=6,
    name="segment_growth_daily_schedule",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
