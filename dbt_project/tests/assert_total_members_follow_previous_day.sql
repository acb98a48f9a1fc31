{#-
    Identity 2 of the daily series: total_members = previous day's total_members +
    net_members_changed. Checked only where the previous calendar day is present.
    Klaviyo owns this data and we cannot fix it, so a breach warns instead of
    stopping the build; marts.segment_growth_daily.identity_holds flags the rows.
-#}
{{ config(severity='warn') }}

with series as (

    select
        account_id,
        segment_id,
        date,
        total_members,
        net_members_changed,
        lag(date) over by_segment as previous_date,
        lag(total_members) over by_segment as previous_total_members
    from {{ ref('stg_klaviyo__segment_series_daily') }}
    window by_segment as (partition by account_id, segment_id order by date)

)

select *
from series
where previous_date = date - 1
  and total_members <> previous_total_members + net_members_changed
