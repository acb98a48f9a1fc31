-- one row per account, tag and day: the growth of all segments carrying the tag, summed.
-- members are segment memberships, not unique profiles: a profile in two segments with
-- the same tag counts twice. tags are the segments' current tags, applied to all days.
with daily as (

    select * from {{ ref('segment_growth_daily') }}

),

tags as (

    select account_id, segment_id, tag_id, tag_name
    from {{ ref('stg_klaviyo__segment_tags') }}

),

by_tag as (

    select
        tags.account_id,
        -- one name per account on every row of the daily mart
        any_value(daily.account_name) as account_name,
        tags.tag_id,
        any_value(tags.tag_name) as tag_name,
        daily.date,
        count(*) as segments_reporting,
        -- BIGINT, not the HUGEINT DuckDB sums integers into (a float in pandas and many BI tools)
        cast(sum(daily.total_members) as bigint) as total_members,
        cast(sum(daily.members_at_start) as bigint) as members_at_start,
        cast(sum(daily.members_added) as bigint) as members_added,
        cast(sum(daily.members_removed) as bigint) as members_removed,
        cast(sum(daily.net_members_changed) as bigint) as net_members_changed,
        bool_or(daily.definition_changed) as any_definition_changed
    from daily
    join tags
        on daily.account_id = tags.account_id
        and daily.segment_id = tags.segment_id
    group by tags.account_id, tags.tag_id, daily.date

)

select
    account_id,
    account_name,
    tag_id,
    tag_name,
    date,
    segments_reporting,
    total_members,
    members_at_start,
    members_added,
    members_removed,
    net_members_changed,
    {{ safe_rate('net_members_changed', 'members_at_start') }} as growth_rate,
    {{ safe_rate('members_removed', 'members_at_start') }} as churn_rate,
    {{ safe_rate('members_added', 'members_at_start') }} as add_rate,
    any_definition_changed
from by_tag
