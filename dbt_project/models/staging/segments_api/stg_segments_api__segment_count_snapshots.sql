-- one row per segment of a segments-api workspace and day its count was recalculated:
-- the day's latest cachedCount. days without a recount have no row
with source as (

    {{ source_or_empty(source('segments_api', 'segment_count_snapshots'), {
        'workspace_name': 'varchar',
        'segment_id': 'varchar',
        'counted_date': 'date',
        'last_counted_at': 'timestamptz',
        'cached_count': 'bigint',
        'fetched_at': 'timestamptz',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        workspace_name as account_id,
        segment_id,
        counted_date,

        ---------- numerics
        cached_count as total_members,

        ---------- timestamps
        last_counted_at,
        fetched_at,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
