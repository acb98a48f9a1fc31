-- one row per segment: current attributes, a readable summary of the definition and
-- the latest size
with segments as (

    select * from {{ ref('stg_klaviyo__segments') }}

),

accounts as (

    select account_id, account_name
    from {{ ref('stg_klaviyo__accounts') }}

),

latest_size as (

    select
        account_id,
        segment_id,
        max(date) as latest_date,
        arg_max(total_members, date) as latest_total_members
    from {{ ref('stg_klaviyo__segment_series_daily') }}
    group by account_id, segment_id

),

versions as (

    select
        account_id,
        segment_id,
        count(*) as definition_version_count
    from {{ ref('int_segment_definition_versions') }}
    group by account_id, segment_id

),

tags as (

    select
        account_id,
        segment_id,
        list_sort(list(tag_name)) as tags
    from {{ ref('stg_klaviyo__segment_tags') }}
    group by account_id, segment_id

),

summarised as (

    select
        account_id,
        segment_id,
        segment_name,
        created_at,
        updated_at,
        is_active,
        is_processing,
        is_starred,
        is_deleted,
        definition,
        -- json paths with [*] return a list with one element per match (none when a
        -- key is absent), so these work for any number of groups and conditions
        json_array_length(definition, '$.condition_groups') as condition_group_count,
        len(json_extract(definition, '$.condition_groups[*].conditions[*]')) as condition_count,
        list_sort(list_distinct(
            json_extract_string(definition, '$.condition_groups[*].conditions[*].type')
        )) as condition_types,
        list_sort(list_distinct(
            json_extract_string(definition, '$.condition_groups[*].conditions[*].group_ids[*]')
        )) as list_ids,
        -- metric conditions name one metric; funnel conditions name one per step
        list_sort(list_distinct(list_concat(
            json_extract_string(definition, '$.condition_groups[*].conditions[*].metric_id'),
            json_extract_string(definition, '$.condition_groups[*].conditions[*].steps[*].metric_id')
        ))) as metric_ids
    from segments

)

select
    summarised.account_id,
    accounts.account_name,
    summarised.segment_id,
    summarised.segment_name,
    summarised.created_at,
    summarised.updated_at,
    summarised.is_active,
    summarised.is_processing,
    summarised.is_starred,
    summarised.is_deleted,
    summarised.condition_group_count,
    summarised.condition_count,
    summarised.condition_types,
    array_to_string(summarised.condition_types, ', ') as condition_types_text,
    summarised.list_ids,
    summarised.metric_ids,
    -- tag names as last loaded; an empty list when the segment has none or tags were never loaded
    coalesce(tags.tags, []) as tags,
    summarised.definition,
    coalesce(versions.definition_version_count, 0) as definition_version_count,
    latest_size.latest_total_members,
    latest_size.latest_date
from summarised
left join accounts
    on summarised.account_id = accounts.account_id
left join latest_size
    on summarised.account_id = latest_size.account_id
    and summarised.segment_id = latest_size.segment_id
left join versions
    on summarised.account_id = versions.account_id
    and summarised.segment_id = versions.segment_id
left join tags
    on summarised.account_id = tags.account_id
    and summarised.segment_id = tags.segment_id
