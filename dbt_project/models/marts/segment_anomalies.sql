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

    -- only the columns the baselines need: the window holds every row of a segment's
    -- history at once, so the names and counts join back on the few days flagged
    select account_id, segment_id, date, members_at_start, 'churn' as metric, members_removed as value
    from daily
    union all
    select account_id, segment_id, date, members_at_start, 'net_change' as metric, net_members_changed as value
    from daily

),

baselines as (

    select
        *,
        -- a range frame over the date, so missing days shorten the baseline instead of
        -- stretching it further back. median and mad (the median of the absolute
        -- deviations from that median) are duckdb's windowed aggregates: no list of the
        -- 28 values is built for each row
        median(value) over previous_days as baseline_median,
        mad(value) over previous_days as baseline_mad,
        count(*) filter (where members_at_start > 0) over previous_days as baseline_days
    from metrics
    window previous_days as (
        partition by account_id, segment_id, metric order by date
        range between interval {{ baseline_days }} days preceding and interval 1 day preceding
    )

),

candidates as (

    select
        *,
        value - baseline_median as deviation,
        -- 0.6745 * (x - median) / MAD = (x - median) / (1.4826 * MAD)
        0.6745 * (value - baseline_median) / greatest(baseline_mad, 1) as robust_z
    from baselines
    where baseline_days >= {{ min_baseline_days }}

),

flagged as (

    select *
    from candidates
    where abs(robust_z) >= {{ z_threshold }}
        and abs(deviation) >= {{ min_deviation }}

)

select
    flagged.account_id,
    daily.account_name,
    flagged.segment_id,
    daily.segment_name,
    flagged.date,
    flagged.metric,
    flagged.value,
    cast(flagged.baseline_median as double) as baseline_median,
    cast(flagged.baseline_mad as double) as baseline_mad,
    flagged.baseline_days,
    cast(flagged.deviation as double) as deviation,
    cast(flagged.robust_z as double) as robust_z,
    case when flagged.deviation > 0 then 'up' else 'down' end as direction,
    daily.total_members,
    daily.definition_changed,
    not daily.definition_changed as is_anomaly,
    case
        when daily.definition_changed then 'definition_changed'
        when flagged.metric = 'churn' and flagged.deviation > 0 then 'churn_spike'
        when flagged.metric = 'churn' then 'churn_drop'
        when flagged.deviation > 0 then 'net_change_spike'
        else 'net_change_drop'
    end as reason
from flagged
inner join daily
    on flagged.account_id = daily.account_id
    and flagged.segment_id = daily.segment_id
    and flagged.date = daily.date
