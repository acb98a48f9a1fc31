{#-
    True when `relation` exists and has a column called `column` (case-insensitive).
    Lets a model built over an older warehouse tell whether a column added later is
    there yet; false at parse time, when nothing is queried.
-#}
{% macro relation_has_column(relation, column) -%}
    {%- if not execute or relation is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set found = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
    {%- if found is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(found) | map(attribute='name') | map('lower') | list -%}
    {{ return(column | lower in names) }}
{%- endmacro %}
