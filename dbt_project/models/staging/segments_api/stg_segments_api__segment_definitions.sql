-- one row per definition (match type and filters) a segment of a segments-api workspace
-- has been seen with
with source as (

    {{ source_or_empty(source('segments_api', 'segment_definitions'), {
        'workspace_name': 'varchar',
        'segment_id': 'varchar',
        'definition_hash': 'varchar',
        'match_type': 'varchar',
        'filters': 'varchar',
        'name': 'varchar',
        'description': 'varchar',
        'first_seen_at': 'timestamptz',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        workspace_name as account_id,
        segment_id,
        definition_hash,

        ---------- attributes
        match_type,
        filters,
        -- the whole definition as one json document, as the api shows it
        json_object('matchType', match_type, 'filters', json(filters)) as definition,
        name as segment_name,
        description,

        ---------- timestamps
        first_seen_at

    from source

)

select * from renamed
