{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['account_id', 'segment_id', 'date'],
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ delete_rows_missing_from_source(this, ref('int_segment_counts_daily'), ['account_id', 'segment_id', 'date']) }}"
        ],
    )
}}

{#-
    on_schema_change='append_new_columns': a table built before account_name existed gets
    the column (NULL in its old rows, which renamed_accounts then rebuilds, so the first
    build after the upgrade rewrites every row once) instead of failing or needing
    --full-refresh. In such a table the column sits last; a full rebuild puts it second.
    platform, change_days and is_multi_day_change arrived the same way: a table built
    before them has NULL there, distinct from every source row's values, so the first
    build after the upgrade rewrites every row once and old rows get platform 'klaviyo'.

    Two platforms (int_segment_counts_daily): Klaviyo's daily series, and the count days
    of the segments api, whose row carries the net change since the previous count
    (change_days days, computed over the whole history in the intermediate model, so a
    row's own numbers never depend on rows outside the 30-day window). Their members
    added and removed are NULL, and so are every flow and rate built from them. A
    rolling window is complete when the changes inside it cover exactly its days
    (sum of change_days = 7 or 30): for Klaviyo that is every day present, for the
    segments api a count exactly 7 (30) days before the day.

    Incremental by what changed, whatever run, range or order caused the change.

    A row depends on the raw series of its segment over its own day and the 29 before
    it (the 30-day window; identity_holds reads only the previous day), on the
    segment's current name, and on whether a definition version started that day. So
    an incremental run rebuilds:
      - every day whose raw numbers differ from the ones the mart was built from (the
        mart keeps the raw numbers, so this is a full compare by value, not a load
        watermark: a load of older days after newer ones, or a re-run that revised an
        old day, is found the same way), plus the 29 days after each, whose windows
        include it (identity_holds of the next day is among them);
      - days whose raw row is new, and the 29 days after them; days whose raw row is
        gone (the post_hook deletes their mart rows) make their 29 successors rebuild;
      - every row of a segment whose name changed;
      - every row of an account whose short name (account_name) changed, or that has
        no account_name yet (a table built before the column existed);
      - every row whose definition_changed flag differs from the definition history.
    The first build and --full-refresh build every day. Equal results to a full
    rebuild after any sequence of loads is what tests/test_incremental_marts.py checks.

    account_name is stored on every row and rewritten when it changes, rather than joined
    in by a view on top: the mart stays one plain table (the analyst copy, BI catalogs and
    the growth report read it as one), renames of an account are rare (a one-off rewrite
    of its rows, as for a segment rename), and the compare below runs on every build, so
    no row can keep a stale name (tests/test_account_names_in_marts.py renames one).
-#}
{%- set incremental = is_incremental() -%}
{#- the 30-day window of a day starts 29 days earlier -#}
{%- set window_days = 30 -%}
{%- set mart_has_account_name = incremental and relation_has_column(this, 'account_name') -%}
{%- set mart_has_platform = incremental and relation_has_column(this, 'platform') -%}

with source_series as (

    select * from {{ ref('int_segment_counts_daily') }}

),

{%- if incremental %}

-- raw rows whose numbers differ from what the mart holds, new raw rows, and mart rows
-- whose raw row is gone: compared by value, so the order of loads never matters
changed_days as (

    select
        coalesce(source.account_id, mart.account_id) as account_id,
        coalesce(source.segment_id, mart.segment_id) as segment_id,
        coalesce(source.date, mart.date) as date
    from source_series as source
    full outer join {{ this }} as mart
        on source.account_id = mart.account_id
        and source.segment_id = mart.segment_id
        and source.date = mart.date
    where source.date is null
        or mart.date is null
        or source.total_members is distinct from mart.total_members
        or source.members_added is distinct from mart.members_added
        or source.members_removed is distinct from mart.members_removed
        or source.net_members_changed is distinct from mart.net_members_changed
        {%- if mart_has_platform %}
        or source.platform is distinct from mart.platform
        or source.change_days is distinct from mart.change_days
        {%- else %}
        -- a table from before the second platform: every row is rewritten once
        or true
        {%- endif %}

),

-- each changed day, and the window_days - 1 days after it, for every present raw row:
-- one pass of a range window instead of a join that multiplies rows by 30
changed_windows as (

    select account_id, segment_id, date
    from (
        select
            account_id,
            segment_id,
            date,
            max(is_present) as is_present,
            max(is_changed) as is_changed
        from (
            select account_id, segment_id, date, 1 as is_present, 0 as is_changed from source_series
            union all
            select account_id, segment_id, date, 0 as is_present, 1 as is_changed from changed_days
        ) as marks
        group by account_id, segment_id, date
    ) as days
    qualify is_present = 1
        and max(is_changed) over (
            partition by account_id, segment_id order by date
            range between interval {{ window_days - 1 }} days preceding and current row
        ) = 1

),

renamed_segments as (

    select mart.account_id, mart.segment_id
    from (
        select distinct
            {{ 'platform' if mart_has_platform else "'klaviyo' as platform" }},
            account_id,
            segment_id,
            segment_name
        from {{ this }}
    ) as mart
    left join {{ ref('int_segment_names') }} as segments
        on mart.platform = segments.platform
        and mart.account_id = segments.account_id
        and mart.segment_id = segments.segment_id
    where mart.segment_name is distinct from segments.segment_name

),

renamed_accounts as (

    -- every account some row of the mart names differently from the accounts table; all
    -- of them when the mart has no account_name yet (NULL is distinct from every name)
    select mart.account_id
    from (
        select distinct
            {{ 'platform' if mart_has_platform else "'klaviyo' as platform" }},
            account_id,
            {{ 'account_name' if mart_has_account_name else 'cast(null as varchar) as account_name' }}
        from {{ this }}
    ) as mart
    left join {{ ref('int_accounts') }} as accounts
        on mart.platform = accounts.platform
        and mart.account_id = accounts.account_id
    where mart.account_name is distinct from accounts.account_name

),

reflagged_days as (

    -- a day the mart flags that the history no longer has, or the other way round
    select
        coalesce(mart.account_id, changes.account_id) as account_id,
        coalesce(mart.segment_id, changes.segment_id) as segment_id,
        coalesce(mart.date, changes.date) as date
    from (select account_id, segment_id, date from {{ this }} where definition_changed) as mart
    full outer join {{ ref('int_segment_definition_changes_daily') }} as changes
        on mart.account_id = changes.account_id
        and mart.segment_id = changes.segment_id
        and mart.date = changes.date
    where mart.date is null or changes.date is null

),

rebuild_keys as (

    select account_id, segment_id, date from changed_windows
    union
    select source.account_id, source.segment_id, source.date
    from source_series as source
    inner join renamed_segments
        on source.account_id = renamed_segments.account_id
        and source.segment_id = renamed_segments.segment_id
    union
    select source.account_id, source.segment_id, source.date
    from source_series as source
    inner join renamed_accounts
        on source.account_id = renamed_accounts.account_id
    union
    select source.account_id, source.segment_id, source.date
    from source_series as source
    inner join reflagged_days
        on source.account_id = reflagged_days.account_id
        and source.segment_id = reflagged_days.segment_id
        and source.date = reflagged_days.date

),

-- the raw days the rebuilt rows need: from window_days before each segment's first
-- rebuilt day on (the previous day for identity_holds is inside that too)
rebuild_from as (

    select account_id, segment_id, min(date) - {{ window_days }} as first_needed
    from rebuild_keys
    group by account_id, segment_id

),

series as (

    select source.*
    from source_series as source
    inner join rebuild_from
        on source.account_id = rebuild_from.account_id
        and source.segment_id = rebuild_from.segment_id
        and source.date >= rebuild_from.first_needed

),

{%- else %}

series as (

    select * from source_series

),

{%- endif %}

segments as (

    select platform, account_id, segment_id, segment_name
    from {{ ref('int_segment_names') }}

),

accounts as (

    select platform, account_id, account_name
    from {{ ref('int_accounts') }}

),

definition_changes as (

    select platform, account_id, segment_id, date
    from {{ ref('int_segment_definition_changes_daily') }}

),

daily as (

    select
        platform,
        account_id,
        segment_id,
        date,
        total_members,
        members_added,
        members_removed,
        net_members_changed,
        change_days,
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
        sum(change_days) over last_7_days as days_changed_7d,
        sum(net_members_changed) over last_7_days as sum_net_change_7d,
        sum(members_added) over last_7_days as sum_members_added_7d,
        sum(members_removed) over last_7_days as sum_members_removed_7d,
        first_value(members_at_start) over last_7_days as first_members_at_start_7d,
        count(*) over last_30_days as days_present_30d,
        sum(change_days) over last_30_days as days_changed_30d,
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
        -- (always filled) say how complete the window is. complete = the changes in the
        -- window cover its days exactly (a klaviyo day covers itself; a segments-api count
        -- covers the days since the previous count, so its window is complete when a
        -- count falls exactly on the day before the window)
        case when days_changed_7d = 7 then first_members_at_start_7d end as members_at_start_7d,
        case when days_changed_7d = 7 then sum_net_change_7d end as net_change_7d,
        case when days_changed_7d = 7 then sum_members_added_7d end as members_added_7d,
        case when days_changed_7d = 7 then sum_members_removed_7d end as members_removed_7d,
        case when days_changed_30d = 30 then first_members_at_start_30d end as members_at_start_30d,
        case when days_changed_30d = 30 then sum_net_change_30d end as net_change_30d,
        case when days_changed_30d = 30 then sum_members_added_30d end as members_added_30d,
        case when days_changed_30d = 30 then sum_members_removed_30d end as members_removed_30d
    from windowed

),

final as (

    select
        measured.platform,
        measured.account_id,
        accounts.account_name,
        measured.segment_id,
        segments.segment_name,
        measured.date,

        measured.total_members,
        measured.members_added,
        measured.members_removed,
        measured.net_members_changed,
        measured.change_days,
        measured.change_days > 1 as is_multi_day_change,
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
    left join accounts
        on measured.platform = accounts.platform
        and measured.account_id = accounts.account_id
    left join segments
        on measured.platform = segments.platform
        and measured.account_id = segments.account_id
        and measured.segment_id = segments.segment_id
    left join definition_changes
        on measured.platform = definition_changes.platform
        and measured.account_id = definition_changes.account_id
        and measured.segment_id = definition_changes.segment_id
        and measured.date = definition_changes.date

)

{%- if incremental %}
-- the earlier days only fed the windows: write back just the rows to rebuild
select final.*
from final
inner join rebuild_keys
    on final.account_id = rebuild_keys.account_id
    and final.segment_id = rebuild_keys.segment_id
    and final.date = rebuild_keys.date
{%- else %}
select * from final
{%- endif %}
