-- one row per segment and account-local day of Klaviyo's segment growth report
with source as (

    {{ source_or_no_rows(source('klaviyo', 'segment_series_daily'), {
        'account_id': 'varchar',
        'segment_id': 'varchar',
        'date': 'date',
        'total_members': 'bigint',
        'members_added': 'bigint',
        'members_removed': 'bigint',
        'net_members_changed': 'bigint',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        account_id,
        segment_id,
        date,

        ---------- numerics
        total_members,
        members_added,
        members_removed,
        net_members_changed,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
