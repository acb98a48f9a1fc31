{#-
    The short name of the one account of a deployment without an accounts file, as a SQL
    literal. It must equal segment_pipeline.accounts.DEFAULT_ACCOUNT_NAME (the Python side
    writes it for that account; tests/test_account_names_in_marts.py checks they agree).
-#}
{% macro default_account_name() -%}
    'default'
{%- endmacro %}
