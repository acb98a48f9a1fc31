-- one row per observed state (klaviyo `updated`, definition) of a segment's definition
with source as (

    {{ source_or_no_rows(source('klaviyo', 'segment_definitions'), {
        'account_id': 'varchar',
        'segment_id': 'varchar',
        'definition_hash': 'varchar',
        'definition': 'json',
        'segment_updated': 'timestamptz',
        'first_seen_at': 'timestamptz',
    }) }}

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
