-- one row per segment, as last returned by the Klaviyo API
with source as (

    {{ source_or_no_rows(source('klaviyo', 'segments'), {
        'account_id': 'varchar',
        'id': 'varchar',
        'name': 'varchar',
        'definition': 'json',
        'is_active': 'boolean',
        'is_processing': 'boolean',
        'is_starred': 'boolean',
        'is_deleted': 'boolean',
        'created': 'timestamptz',
        'updated': 'timestamptz',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        account_id,
        id as segment_id,

        ---------- attributes
        name as segment_name,
        definition,

        ---------- booleans
        is_active,
        is_processing,
        is_starred,
        is_deleted,

        ---------- timestamps
        created as created_at,
        updated as updated_at,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
