-- one row per workspace of the segments api. the workspace is this platform's account:
-- its name is both account_id and account_name in the models, and its IANA timezone
-- defines the day a count is attributed to
with source as (

    {{ source_or_empty(source('segments_api', 'workspaces'), {
        'workspace_name': 'varchar',
        'timezone': 'varchar',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        workspace_name as account_id,

        ---------- attributes
        workspace_name as account_name,
        -- a workspace without a timezone is treated as UTC rather than dropped
        coalesce(nullif(trim(timezone), ''), 'UTC') as timezone,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
