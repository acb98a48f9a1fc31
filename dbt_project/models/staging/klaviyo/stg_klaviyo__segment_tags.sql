-- one row per (segment, tag), unnested from klaviyo.segment_tags (one row per segment
-- with its tags as a json list). the raw table only exists once tags were loaded (the
-- key needs tags:read); until then this is empty, so every model still builds.
{%- set raw = source('klaviyo', 'segment_tags') -%}
{%- set relation = adapter.get_relation(database=raw.database, schema=raw.schema, identifier=raw.identifier) if execute else none -%}

{% if relation is not none %}
with source as (

    select * from {{ raw }}

),

unnested as (

    select
        account_id,
        segment_id,
        unnest(json_transform(tags, '[{"id": "VARCHAR", "name": "VARCHAR"}]')) as tag,
        _loaded_at as loaded_at
    from source

)

select
    account_id,
    segment_id,
    tag.id as tag_id,
    tag.name as tag_name,
    loaded_at
from unnested
{% else %}
select
    cast(null as varchar) as account_id,
    cast(null as varchar) as segment_id,
    cast(null as varchar) as tag_id,
    cast(null as varchar) as tag_name,
    cast(null as timestamptz) as loaded_at
where false
{% endif %}
