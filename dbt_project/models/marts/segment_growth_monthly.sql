-- one row per segment and calendar month. a full rebuild from the daily mart on every
-- run, for the same reasons as segment_growth_weekly
{{ segment_growth_rollup("date_trunc('month', date)", 'month_start') }}
