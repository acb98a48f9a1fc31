-- one row per Klaviyo account: its IANA timezone defines the account-local day
with source as (

    select * from {{ source('klaviyo', 'accounts') }}

),

renamed as (

    select
        ---------- ids
        account_id,

        ---------- attributes
        -- an account without a timezone is treated as UTC rather than dropped
        coalesce(nullif(trim(timezone), ''), 'UTC') as timezone,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
