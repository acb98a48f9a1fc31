-- one row per definition version of a segment, numbered and given a validity interval.
--
-- klaviyo: the raw table holds one row per observed state (segment_updated, definition_hash), so a
-- return to an earlier definition is a row of its own. consecutive states with the same
-- definition (a rename also bumps `updated`) are one version: a version starts wherever
-- the hash differs from the previous state's, so A -> B -> A is three versions.
with definitions as (

    select * from {{ ref('stg_klaviyo__segment_definitions') }}

),

segments as (

    select account_id, segment_id, created_at
    from {{ ref('stg_klaviyo__segments') }}

),

ordered as (

    select
        *,
        -- order by when the state took effect in klaviyo; load time and the hash only
        -- break ties, so the order is deterministic
        lag(definition_hash) over by_time as previous_hash,
        row_number() over by_time as state_number
    from definitions
    window by_time as (
        partition by account_id, segment_id
        order by coalesce(segment_updated_at, first_seen_at), first_seen_at, definition_hash
    )

),

starts as (

    select
        *,
        previous_hash is null or previous_hash <> definition_hash as starts_version
    from ordered

),

numbered as (

    select
        *,
        sum(case when starts_version then 1 else 0 end) over (
            partition by account_id, segment_id
            order by state_number
            rows between unbounded preceding and current row
        ) as version_number
    from starts

),

versions as (

    -- the first state of each version says when it took effect and when it was seen
    select
        numbered.account_id,
        numbered.segment_id,
        numbered.version_number,
        numbered.definition_hash,
        numbered.definition,
        numbered.segment_updated_at,
        numbered.first_seen_at,
        segments.created_at as segment_created_at
    from numbered
    left join segments
        on numbered.account_id = segments.account_id
        and numbered.segment_id = segments.segment_id
    where numbered.starts_version

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
    from versions

),

klaviyo_versions as (

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

)

select 'klaviyo' as platform, *
from klaviyo_versions

union all

select 'segments_api' as platform, *
from {{ ref('int_segments_api__definition_versions') }}
