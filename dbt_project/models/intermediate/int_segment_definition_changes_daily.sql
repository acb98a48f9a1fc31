-- one row per segment and account-local day whose numbers a new definition version affects.
--
-- klaviyo counts every day, so that is the day the version became valid. a segments-api
-- workspace has a count only on the days it recalculated one, and each count measures the
-- change since the one before: a version that became valid on a day without a count is
-- dated on the next counted day, whose change it is part of (still its own day while no
-- later count exists).
with versions as (

    select * from {{ ref('int_segment_definition_versions') }}

),

accounts as (

    select platform, account_id, timezone from {{ ref('int_accounts') }}

),

counted_days as (

    select account_id, segment_id, date
    from {{ ref('int_segments_api__count_intervals') }}

),

changes as (

    select
        versions.platform,
        versions.account_id,
        versions.segment_id,
        -- klaviyo's daily series (and a segments-api count) is in the account's timezone,
        -- so the change must be dated in it too (an evening edit in new york is already the next day in utc)
        cast(timezone(coalesce(accounts.timezone, 'UTC'), versions.valid_from) as date) as valid_day,
        versions.version_number
    from versions
    left join accounts
        on versions.platform = accounts.platform
        and versions.account_id = accounts.account_id
    -- version 1 is the definition the segment was created with, not a change
    where versions.version_number > 1

),

dated as (

    select
        changes.platform,
        changes.account_id,
        changes.segment_id,
        changes.version_number,
        coalesce(min(counted_days.date), changes.valid_day) as date
    from changes
    left join counted_days
        on changes.platform = 'segments_api'
        and changes.account_id = counted_days.account_id
        and changes.segment_id = counted_days.segment_id
        and counted_days.date >= changes.valid_day
    group by changes.platform, changes.account_id, changes.segment_id, changes.version_number, changes.valid_day

)

select
    platform,
    account_id,
    segment_id,
    date,
    count(*) as versions_started,
    max(version_number) as last_version_number
from dated
group by platform, account_id, segment_id, date
