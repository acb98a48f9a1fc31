-- one row per definition version of a segment, numbered and given a validity interval
with definitions as (

    select * from {{ ref('stg_klaviyo__segment_definitions') }}

),

segments as (

    select account_id, segment_id, created_at
    from {{ ref('stg_klaviyo__segments') }}

),

numbered as (

    select
        definitions.account_id,
        definitions.segment_id,
        definitions.definition_hash,
        definitions.definition,
        definitions.segment_updated_at,
        definitions.first_seen_at,
        segments.created_at as segment_created_at,
        -- order by when the version took effect in klaviyo; load time and the hash
        -- only break ties, so the numbering is deterministic
        row_number() over (
            partition by definitions.account_id, definitions.segment_id
            order by
                coalesce(definitions.segment_updated_at, definitions.first_seen_at),
                definitions.first_seen_at,
                definitions.definition_hash
        ) as version_number
    from definitions
    left join segments
        on definitions.account_id = segments.account_id
        and definitions.segment_id = segments.segment_id

),

valid_from as (

    select
        *,
        -- the first version we know of has defined the segment since it was created;
        -- later versions start when the edit bumped the segment's `updated`
        case
            when version_number = 1
                then coalesce(segment_created_at, segment_updated_at, first_seen_at)
            else coalesce(segment_updated_at, first_seen_at)
        end as valid_from
    from numbered

)

select
    account_id,
    segment_id,
    version_number,
    definition_hash,
    definition,
    valid_from,
    lead(valid_from) over (
        partition by account_id, segment_id order by version_number
    ) as valid_to,
    segment_updated_at,
    first_seen_at
from valid_from
