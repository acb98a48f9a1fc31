{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['account_id', 'segment_id', 'date'],
        on_schema_change='fail',
    )
}}

{#-
    Partitioned runs pass the half-open window [min_date, max_date) as vars. Only then,
    and only when the table already exists, is the build restricted; the first build,
    --full-refresh and runs without vars rebuild every day.
-#}
{%- set min_date = date_var('min_date') -%}
{%- set max_date = date_var('max_date') -%}
{%- set windowed = is_incremental() and (min_date is not none or max_date is not none) -%}
{#- the 30-day window of min_date starts 29 days earlier, and identity_holds needs the day before that -#}
{%- set lookback_days = 30 -%}

with series as (

    select * from {{ ref('stg_klaviyo__segment_series_daily') }}
    {%- if windowed %}
    where true
        {%- if min_date is not none %}
        and date >= date '{{ min_date }}' - {{ lookback_days }}
        {%- endif %}
        {%- if max_date is not none %}
        and date < date '{{ max_date }}'
        {%- endif %}
    {%- endif %}

),

segments as (

    select account_id, segment_id, segment_name
    from {{ ref('stg_klaviyo__segments') }}

),

definition_changes as (

    select account_id, segment_id, date
    from {{ ref('int_segment_definition_changes_daily') }}

),

daily as (

    select
        account_id,
        segment_id,
        date,
        total_members,
        members_added,
        members_removed,
        net_members_changed,
        -- members at the start of the day, derived so it is consistent with the day's
        -- own total even when the previous day is missing
        total_members - net_members_changed as members_at_start,
        lag(date) over by_day as previous_date,
        lag(total_members) over by_day as previous_total_members
    from series
    window by_day as (partition by account_id, segment_id order by date)

),

windowed as (

    select
        *,
        -- range frames over the date (not rows) so a missing day shortens the window
        -- instead of silently stretching it
        count(*) over last_7_days as days_present_7d,
        sum(net_members_changed) over last_7_days as sum_net_change_7d,
        sum(members_added) over last_7_days as sum_members_added_7d,
        sum(members_removed) over last_7_days as sum_members_removed_7d,
        first_value(members_at_start) over last_7_days as first_members_at_start_7d,
        count(*) over last_30_days as days_present_30d,
        sum(net_members_changed) over last_30_days as sum_net_change_30d,
        sum(members_added) over last_30_days as sum_members_added_30d,
        sum(members_removed) over last_30_days as sum_members_removed_30d,
        first_value(members_at_start) over last_30_days as first_members_at_start_30d
    from daily
    window
        last_7_days as (
            partition by account_id, segment_id order by date
            range between interval 6 days preceding and current row
        ),
        last_30_days as (
            partition by account_id, segment_id order by date
            range between interval 29 days preceding and current row
        )

),

measured as (

    select
        *,
        -- a window is measured from the start of its first day, which is only known
        -- when all of its days are present. Its sums are NULL until then as well, so a
        -- sum over fewer days is never read as the window's change; days_present_7d/30d
        -- (always filled) say how complete the window is
        case when days_present_7d = 7 then first_members_at_start_7d end as members_at_start_7d,
        case when days_present_7d = 7 then sum_net_change_7d end as net_change_7d,
        case when days_present_7d = 7 then sum_members_added_7d end as members_added_7d,
        case when days_present_7d = 7 then sum_members_removed_7d end as members_removed_7d,
        case when days_present_30d = 30 then first_members_at_start_30d end as members_at_start_30d,
        case when days_present_30d = 30 then sum_net_change_30d end as net_change_30d,
        case when days_present_30d = 30 then sum_members_added_30d end as members_added_30d,
        case when days_present_30d = 30 then sum_members_removed_30d end as members_removed_30d
    from windowed

),

final as (

    select
        measured.account_id,
        measured.segment_id,
        segments.segment_name,
        measured.date,

        measured.total_members,
        measured.members_added,
        measured.members_removed,
        measured.net_members_changed,
        measured.members_at_start,
        {{ safe_rate('measured.net_members_changed', 'measured.members_at_start') }} as growth_rate,
        {{ safe_rate('measured.members_removed', 'measured.members_at_start') }} as churn_rate,
        {{ safe_rate('measured.members_added', 'measured.members_at_start') }} as add_rate,

        measured.days_present_7d,
        measured.members_at_start_7d,
        measured.net_change_7d,
        measured.members_added_7d,
        measured.members_removed_7d,
        {{ safe_rate('measured.net_change_7d', 'measured.members_at_start_7d') }} as growth_rate_7d,
        {{ safe_rate('measured.members_removed_7d', 'measured.members_at_start_7d') }} as churn_rate_7d,
        {{ safe_rate('measured.members_added_7d', 'measured.members_at_start_7d') }} as add_rate_7d,

        measured.days_present_30d,
        measured.members_at_start_30d,
        measured.net_change_30d,
        measured.members_added_30d,
        measured.members_removed_30d,
        {{ safe_rate('measured.net_change_30d', 'measured.members_at_start_30d') }} as growth_rate_30d,
        {{ safe_rate('measured.members_removed_30d', 'measured.members_at_start_30d') }} as churn_rate_30d,
        {{ safe_rate('measured.members_added_30d', 'measured.members_at_start_30d') }} as add_rate_30d,

        definition_changes.date is not null as definition_changed,
        -- identity 1 always; identity 2 only when yesterday is there to compare with
        (
            measured.net_members_changed = measured.members_added - measured.members_removed
            and case
                when measured.previous_date = measured.date - 1
                    then measured.total_members
                        = measured.previous_total_members + measured.net_members_changed
                else true
            end
        ) as identity_holds
    from measured
    left join segments
        on measured.account_id = segments.account_id
        and measured.segment_id = segments.segment_id
    left join definition_changes
        on measured.account_id = definition_changes.account_id
        and measured.segment_id = definition_changes.segment_id
        and measured.date = definition_changes.date

)

select * from final
{%- if windowed %}
-- the look-back rows only fed the windows; write back just the requested days
where true
    {%- if min_date is not none %}
    and date >= date '{{ min_date }}'
    {%- endif %}
    {%- if max_date is not none %}
    and date < date '{{ max_date }}'
    {%- endif %}
{%- endif %}
