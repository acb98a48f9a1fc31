-- one row per definition version of a segment of either platform, with its validity interval
with versions as (

    select * from {{ ref('int_segment_definition_versions') }}

),

segments as (

    select platform, account_id, segment_id, segment_name
    from {{ ref('int_segment_names') }}

),

accounts as (

    select platform, account_id, account_name
    from {{ ref('int_accounts') }}

)

select
    versions.platform,
    versions.account_id,
    accounts.account_name,
    versions.segment_id,
    segments.segment_name,
    versions.version_number,
    versions.definition,
    versions.definition_hash,
    versions.valid_from,
    versions.valid_to,
    versions.valid_to is null as is_current,
    versions.first_seen_at
from versions
left join accounts
    on versions.platform = accounts.platform
    and versions.account_id = accounts.account_id
left join segments
    on versions.platform = segments.platform
    and versions.account_id = segments.account_id
    and versions.segment_id = segments.segment_id
