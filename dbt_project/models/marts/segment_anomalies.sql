{#-
    Days that stand out for a segment: a robust z-score (median and MAD, the modified
    z-score of Iglewicz and Hoaglin) of the day's churn (members_removed) and of its
    net change against the segment's previous 28 days.

    A day is a candidate when |robust_z| >= anomaly_z_threshold (3.5) and the day is at
    least anomaly_min_deviation (10) members away from the baseline median. It is only
    judged when at least anomaly_min_baseline_days (14) of the previous 28 days are
    present and started with members: a new segment whose history Klaviyo is still
    filling (zeros for its first days) is never flagged. A candidate on a day whose
    definition changed is kept with is_anomaly = false and reason 'definition_changed':
    the jump is the edit, not the audience.

    The MAD is floored at 1 member, so a perfectly steady baseline (e.g. no churn for
    28 days) still yields a finite score when the day jumps.
-#}
{%- set baseline_days = var('anomaly_baseline_days', 28) | int -%}
{%- set min_baseline_days = var('anomaly_min_baseline_days', 14) | int -%}
{%- set z_threshold = var('anomaly_z_threshold', 3.5) | float -%}
{%- set min_deviation = var('anomaly_min_deviation', 10) | int -%}

with daily as (

    -- klaviyo only: a segments-api row has no churn, and its net change may span several
    -- days, so a robust z-score against daily baselines would flag the gaps, not the audience
    select * from {{ ref('segment_growth_daily') }}
    where platform = 'klaviyo'

),

metrics as (

    select
        account_id, account_name, segment_id, segment_name, date, total_members, members_at_start,
        definition_changed, 'churn' as metric, members_removed as value
    from daily
    union all
    select
        account_id, account_name, segment_id, segment_name, date, total_members, members_at_start,
        definition_changed, 'net_change' as metric, net_members_changed as value
    from daily

),

baselines as (

    select
        *,
        -- a range frame over the date, so missing days shorten the baseline instead of
        -- stretching it further back
        list(value) over previous_days as baseline_values,
        count(*) filter (where members_at_start > 0) over previous_days as baseline_days
    from metrics
    window previous_days as (
        partition by account_id, segment_id, metric order by date
        range between interval {{ baseline_days }} days preceding and interval 1 day preceding
    )

),

scored as (

    select
        *,
        list_median(baseline_values) as baseline_median
    from baselines
    where baseline_days >= {{ min_baseline_days }}

),

with_mad as (

    select
        *,
        list_median(list_transform(baseline_values, lambda x: abs(x - baseline_median))) as baseline_mad
    from scored

),

candidates as (

    select
        *,
        value - baseline_median as deviation,
        -- 0.6745 * (x - median) / MAD = (x - median) / (1.4826 * MAD)
        0.6745 * (value - baseline_median) / greatest(baseline_mad, 1) as robust_z
    from with_mad

)

select
    account_id,
    account_name,
    segment_id,
    segment_name,
    date,
    metric,
    value,
    cast(baseline_median as double) as baseline_median,
    cast(baseline_mad as double) as baseline_mad,
    baseline_days,
    cast(deviation as double) as deviation,
    cast(robust_z as double) as robust_z,
    case when deviation > 0 then 'up' else 'down' end as direction,
    total_members,
    definition_changed,
    not definition_changed as is_anomaly,
    case
        when definition_changed then 'definition_changed'
        when metric = 'churn' and deviation > 0 then 'churn_spike'
        when metric = 'churn' then 'churn_drop'
        when deviation > 0 then 'net_change_spike'
        else 'net_change_drop'
    end as reason
from candidates
where abs(robust_z) >= {{ z_threshold }}
    and abs(deviation) >= {{ min_deviation }}
