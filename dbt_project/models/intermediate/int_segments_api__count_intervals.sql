-- one row per segments-api segment and day its count was recalculated: the interval from
-- the previous count to this one.
--
-- the api gives only a cached total, recalculated now and then. the net change between
-- two counts is known; how it was spread over the days between them is not, so it is
-- never spread: the count day carries the whole change, change_days says how many days
-- it covers (the day after the previous count up to and including this one) and
-- is_multi_day_change flags a change over more than one day. the first count of a
-- segment has a total but no change. members added and removed are unknown on this
-- platform and left null by the marts, never derived.
with snapshots as (

    select * from {{ ref('stg_segments_api__segment_count_snapshots') }}

),

with_previous as (

    select
        account_id,
        segment_id,
        counted_date as date,
        total_members,
        last_counted_at,
        lag(counted_date) over by_day as previous_counted_date,
        lag(total_members) over by_day as previous_total_members
    from snapshots
    window by_day as (partition by account_id, segment_id order by counted_date)

)

select
    account_id,
    segment_id,
    date,
    total_members,
    last_counted_at,
    previous_counted_date,
    previous_total_members,
    total_members - previous_total_members as net_members_changed,
    cast(date - previous_counted_date as integer) as change_days,
    date - previous_counted_date > 1 as is_multi_day_change
from with_previous
