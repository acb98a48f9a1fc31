-- one row per Klaviyo account: its IANA timezone defines the account-local day, its
-- account_name is the deployment's short name for it (from the accounts file)
{#- a warehouse made before account_name existed gets the column with its next segments
    load; until then (e.g. a series-only run comes first) this view must still build -#}
{%- set has_account_name = relation_has_column(source('klaviyo', 'accounts'), 'account_name') %}

with source as (

    {{ source_or_no_rows(source('klaviyo', 'accounts'), {
        'account_id': 'varchar',
        'timezone': 'varchar',
        '_loaded_at': 'timestamptz',
    }) }}

),

renamed as (

    select
        ---------- ids
        account_id,

        ---------- attributes
        -- rows loaded before account_name existed have NULL there (or no column at all).
        -- such a deployment had one account, which the pipeline calls 'default' when there
        -- is no accounts file, so that is its name until the next load writes the real one
        {% if has_account_name -%}
        coalesce(nullif(trim(account_name), ''), {{ default_account_name() }}) as account_name,
        {%- else -%}
        {{ default_account_name() }} as account_name,
        {%- endif %}
        -- an account without a timezone is treated as UTC rather than dropped
        coalesce(nullif(trim(timezone), ''), 'UTC') as timezone,

        ---------- load metadata
        _loaded_at as loaded_at

    from source

)

select * from renamed
