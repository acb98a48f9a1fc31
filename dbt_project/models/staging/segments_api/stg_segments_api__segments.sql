-- one row per segment of a segments-api workspace, as last returned by the api
with source as (

    {{ source_or_empty(source('segments_api', 'segments'), {
        'workspace_name': 'varchar',
        'segment_id': 'varchar',
        'name': 'varchar',
        'description': 'varchar',
        'created_at': 'timestamptz',
        'first_seen_at': 'timestamptz',
        'last_seen_at': 'timestamptz',
        'deleted_at': 'timestamptz',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        workspace_name as account_id,
        segment_id,

        ---------- attributes
        name as segment_name,
        description,

        ---------- booleans
        deleted_at is not null as is_deleted,

        ---------- timestamps
        created_at,
        first_seen_at,
        last_seen_at,
        deleted_at,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
