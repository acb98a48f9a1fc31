{#-
    Selects `columns` (a mapping name -> SQL type) from `relation` when that relation
    exists, or an empty relation of the same columns and types when it does not.

    For a source that may not have been loaded yet (a warehouse that has only ever loaded
    Klaviyo has no schema `segments_api`): dbt-duckdb does not check that a source exists,
    so selecting from a missing one fails at run time; with this the models over it build
    and hold no rows until the first load creates the table. Also false at parse time.
-#}
{% macro source_or_empty(relation, columns) -%}
    {%- set found = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier) if execute else none -%}
    select
    {%- for name, type in columns.items() %}
        cast({{ name if found is not none else 'null' }} as {{ type }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
    {% if found is not none -%}
    from {{ relation }}
    {%- else -%}
    where false
    {%- endif %}
{%- endmacro %}

{#-
    Every column of `relation` as it is when that relation exists, or an empty relation
    of `columns` (name -> SQL type: the ones the model reads) when it does not.

    For the Klaviyo sources: a deployment that has only Segments API workspaces never
    loads them, and its marts must still build. Unlike source_or_empty, a loaded table is
    read untouched (no casts), so the Klaviyo models read exactly what they always did.
-#}
{% macro source_or_no_rows(relation, columns) -%}
    {%- set found = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier) if execute else none -%}
    {% if found is not none or not execute -%}
    select * from {{ relation }}
    {%- else -%}
    select
    {%- for name, type in columns.items() %}
        cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
    where false
    {%- endif %}
{%- endmacro %}
