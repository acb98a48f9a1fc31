{#-
    Roll marts.segment_growth_daily up to one row per segment and period.

    period_start_sql: expression giving the first day of the period for column `date`
    period_column:    name of that output column (week_start, month_start)

    Stocks are never summed: members_at_start is the start of the first day present in
    the period and members_at_end the total of the last day present. Flows are sums.
    A segments-api segment has days with a count only, whose net change may cover days
    before the period (changes_from says from when); its added and removed are NULL,
    and so are their sums (sum() of NULLs) and the rates built on them.
-#}
{% macro segment_growth_rollup(period_start_sql, period_column) -%}
with daily as (

    select * from {{ ref('segment_growth_daily') }}

),

periods as (

    select
        platform,
        account_id,
        segment_id,
        cast({{ period_start_sql }} as date) as {{ period_column }},
        -- the daily mart holds the current account name on every row; any day's is the same
        arg_max(account_name, date) as account_name,
        arg_max(segment_name, date) as segment_name,
        min(date) as first_date,
        max(date) as last_date,
        count(*) as days_covered,
        -- the first day the period's net change covers: before first_date when a
        -- segments-api count in it covers days since an earlier count
        min(date - coalesce(change_days, 1) + 1) as changes_from,
        count(*) filter (where is_multi_day_change) as multi_day_changes,
        arg_min(members_at_start, date) as members_at_start,
        arg_max(total_members, date) as members_at_end,
        -- DuckDB sums integers into HUGEINT (a float in pandas and many BI tools); members fit BIGINT
        cast(sum(members_added) as bigint) as members_added,
        cast(sum(members_removed) as bigint) as members_removed,
        cast(sum(net_members_changed) as bigint) as net_members_changed
    from daily
    group by 1, 2, 3, 4

)

select
    platform,
    account_id,
    account_name,
    segment_id,
    segment_name,
    {{ period_column }},
    first_date,
    last_date,
    days_covered,
    changes_from,
    multi_day_changes,
    members_at_start,
    members_at_end,
    members_added,
    members_removed,
    net_members_changed,
    {{ safe_rate('net_members_changed', 'members_at_start') }} as growth_rate,
    {{ safe_rate('members_removed', 'members_at_start') }} as churn_rate,
    {{ safe_rate('members_added', 'members_at_start') }} as add_rate
from periods
{%- endmacro %}
