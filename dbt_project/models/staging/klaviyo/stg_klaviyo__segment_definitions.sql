-- one row per observed state (klaviyo `updated`, definition) of a segment's definition
with source as (

    select * from {{ source('klaviyo', 'segment_definitions') }}

),

renamed as (

    select
        ---------- ids
        account_id,
        segment_id,
        definition_hash,

        ---------- attributes
        definition,

        ---------- timestamps
        segment_updated as segment_updated_at,
        first_seen_at

    from source

)

select * from renamed
