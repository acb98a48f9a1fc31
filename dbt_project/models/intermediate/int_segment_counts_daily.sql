-- the daily numbers of every platform in one shape, the input of marts.segment_growth_daily:
-- one row per (account_id, segment_id, date) with a count.
--   klaviyo: its daily series; every row covers its own day (change_days = 1).
--   segments_api: one row per count day (int_segments_api__count_intervals): the net
--     change since the previous count on the count day, members added and removed null.
select
    'klaviyo' as platform,
    account_id,
    segment_id,
    date,
    total_members,
    members_added,
    members_removed,
    net_members_changed,
    1 as change_days
from {{ ref('stg_klaviyo__segment_series_daily') }}

union all

select
    'segments_api' as platform,
    account_id,
    segment_id,
    date,
    total_members,
    cast(null as bigint) as members_added,
    cast(null as bigint) as members_removed,
    net_members_changed,
    change_days
from {{ ref('int_segments_api__count_intervals') }}
