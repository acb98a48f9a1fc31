-- one row per distinct definition version observed for a segment
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
