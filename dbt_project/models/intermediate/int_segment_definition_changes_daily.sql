-- one row per segment and account-local day on which a new definition version became valid
with versions as (

    select * from {{ ref('int_segment_definition_versions') }}

),

accounts as (

    select platform, account_id, timezone from {{ ref('int_accounts') }}

),

changes as (

    select
        versions.platform,
        versions.account_id,
        versions.segment_id,
        -- klaviyo's daily series (and a segments-api count) is in the account's timezone,
        -- so the change must be dated in it too (an evening edit in new york is already the next day in utc)
        cast(timezone(coalesce(accounts.timezone, 'UTC'), versions.valid_from) as date) as date,
        versions.version_number
    from versions
    left join accounts
        on versions.platform = accounts.platform
        and versions.account_id = accounts.account_id
    -- version 1 is the definition the segment was created with, not a change
    where versions.version_number > 1

)

select
    platform,
    account_id,
    segment_id,
    date,
    count(*) as versions_started,
    max(version_number) as last_version_number
from changes
group by platform, account_id, segment_id, date
