{#-
    Use the configured schema name as-is (`marts`, not dbt's default `main_marts`):
    analysts and the Dagster assets refer to these names directly. Models without a
    +schema fall back to the target schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
