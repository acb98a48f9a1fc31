-- one row per segment of either platform: current attributes, a readable summary of the
-- definition and the latest size. segments-api segments have neither tags (an empty
-- list) nor klaviyo's flags, lists or metrics (NULL)
with segments as (

    select * from {{ ref('stg_klaviyo__segments') }}

),

accounts as (

    select platform, account_id, account_name
    from {{ ref('int_accounts') }}

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
    where platform = 'klaviyo'
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

),

klaviyo_segments as (

    select
        'klaviyo' as platform,
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
        on accounts.platform = 'klaviyo'
        and summarised.account_id = accounts.account_id
    left join latest_size
        on summarised.account_id = latest_size.account_id
        and summarised.segment_id = latest_size.segment_id
    left join versions
        on summarised.account_id = versions.account_id
        and summarised.segment_id = versions.segment_id
    left join tags
        on summarised.account_id = tags.account_id
        and summarised.segment_id = tags.segment_id

),

api_versions as (

    select
        account_id,
        segment_id,
        count(*) as definition_version_count,
        arg_max(definition, version_number) as definition
    from {{ ref('int_segment_definition_versions') }}
    where platform = 'segments_api'
    group by account_id, segment_id

),

api_latest_size as (

    select
        account_id,
        segment_id,
        max(counted_date) as latest_date,
        arg_max(total_members, counted_date) as latest_total_members
    from {{ ref('stg_segments_api__segment_count_snapshots') }}
    group by account_id, segment_id

),

segments_api_segments as (

    select
        'segments_api' as platform,
        api_segments.account_id,
        accounts.account_name,
        api_segments.segment_id,
        api_segments.segment_name,
        api_segments.created_at,
        -- the api has no `updated` (definition edits are in segment_definition_history)
        cast(null as timestamptz) as updated_at,
        cast(null as boolean) as is_active,
        cast(null as boolean) as is_processing,
        cast(null as boolean) as is_starred,
        api_segments.is_deleted,
        -- one group of conditions, joined by its match type (all / any)
        case when api_versions.definition is not null then 1 end as condition_group_count,
        cast(json_array_length(api_versions.definition, '$.filters') as bigint) as condition_count,
        -- the filtered fields play the part of klaviyo's condition types
        list_sort(list_distinct(
            json_extract_string(api_versions.definition, '$.filters[*].field')
        )) as condition_types,
        cast(null as varchar[]) as list_ids,
        cast(null as varchar[]) as metric_ids,
        cast([] as varchar[]) as tags,
        api_versions.definition,
        coalesce(api_versions.definition_version_count, 0) as definition_version_count,
        api_latest_size.latest_total_members,
        api_latest_size.latest_date
    from {{ ref('stg_segments_api__segments') }} as api_segments
    left join accounts
        on accounts.platform = 'segments_api'
        and api_segments.account_id = accounts.account_id
    left join api_versions
        on api_segments.account_id = api_versions.account_id
        and api_segments.segment_id = api_versions.segment_id
    left join api_latest_size
        on api_segments.account_id = api_latest_size.account_id
        and api_segments.segment_id = api_latest_size.segment_id

)

select * from klaviyo_segments

union all by name

select
    *,
    array_to_string(condition_types, ', ') as condition_types_text
from segments_api_segments
