-- one row per definition version of a segments-api segment, numbered in the order the
-- loads first saw them.
--
-- the api has no `updated` and no history: a version is a row of the raw table, which the
-- snapshot writes whenever a segment's definition (match type and filters) differs from
-- its newest stored one (a return to an earlier definition included), and it took effect
-- at the latest when a load first saw it (first_seen_at; the edit happened since the
-- load before). version 1 has defined the segment since it was created.
with definitions as (

    select * from {{ ref('stg_segments_api__segment_definitions') }}

),

segments as (

    select account_id, segment_id, created_at
    from {{ ref('stg_segments_api__segments') }}

),

numbered as (

    select
        definitions.account_id,
        definitions.segment_id,
        definitions.definition_hash,
        definitions.definition,
        definitions.first_seen_at,
        segments.created_at as segment_created_at,
        row_number() over (
            partition by definitions.account_id, definitions.segment_id
            order by definitions.first_seen_at, definitions.definition_hash
        ) as version_number
    from definitions
    left join segments
        on definitions.account_id = segments.account_id
        and definitions.segment_id = segments.segment_id

),

valid_from as (

    select
        *,
        case
            when version_number = 1 then coalesce(least(segment_created_at, first_seen_at), first_seen_at)
            else first_seen_at
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
    cast(null as timestamptz) as segment_updated_at,
    first_seen_at
from valid_from
