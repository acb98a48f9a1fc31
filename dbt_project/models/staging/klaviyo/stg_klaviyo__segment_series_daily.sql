-- one row per segment and account-local day of Klaviyo's segment growth report
with source as (

    select * from {{ source('klaviyo', 'segment_series_daily') }}

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
