-- one row per account, tag and iso week (monday start), from the weekly segment mart:
-- stocks are summed per segment first (each segment's own start and end of the week),
-- so a segment missing some days of the week never splits a stock across days.
with weekly as (

    select * from {{ ref('segment_growth_weekly') }}

),

tags as (

    select account_id, segment_id, tag_id, tag_name
    from {{ ref('stg_klaviyo__segment_tags') }}

),

by_tag as (

    select
        tags.account_id,
        -- one name per account on every row of the weekly mart
        any_value(weekly.account_name) as account_name,
        tags.tag_id,
        any_value(tags.tag_name) as tag_name,
        weekly.week_start,
        count(*) as segments_reporting,
        min(weekly.days_covered) as min_days_covered,
        -- BIGINT, not the HUGEINT DuckDB sums integers into (a float in pandas and many BI tools)
        cast(sum(weekly.members_at_start) as bigint) as members_at_start,
        cast(sum(weekly.members_at_end) as bigint) as members_at_end,
        cast(sum(weekly.members_added) as bigint) as members_added,
        cast(sum(weekly.members_removed) as bigint) as members_removed,
        cast(sum(weekly.net_members_changed) as bigint) as net_members_changed
    from weekly
    join tags
        on weekly.account_id = tags.account_id
        and weekly.segment_id = tags.segment_id
    group by tags.account_id, tags.tag_id, weekly.week_start

)

select
    account_id,
    account_name,
    tag_id,
    tag_name,
    week_start,
    segments_reporting,
    min_days_covered,
    members_at_start,
    members_at_end,
    members_added,
    members_removed,
    net_members_changed,
    {{ safe_rate('net_members_changed', 'members_at_start') }} as growth_rate,
    {{ safe_rate('members_removed', 'members_at_start') }} as churn_rate,
    {{ safe_rate('members_added', 'members_at_start') }} as add_rate
from by_tag
