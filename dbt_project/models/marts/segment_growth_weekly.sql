-- one row per segment and iso week (monday start). a full rebuild from the daily mart
-- on every run: it is a small aggregate, and rebuilding avoids partially-updated weeks
-- when a partitioned run touches only some days of a week
{{ segment_growth_rollup("date_trunc('week', date)", 'week_start') }}
