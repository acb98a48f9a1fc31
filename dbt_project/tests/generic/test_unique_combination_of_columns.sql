{#-
    Fails for every combination of the given columns that occurs more than once:
    the composite-key version of dbt's built-in `unique` (written here because the
    project uses no dbt packages).
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns_csv = combination_of_columns | join(', ') %}

select
    {{ columns_csv }},
    count(*) as n_records
from {{ model }}
group by {{ columns_csv }}
having count(*) > 1

{% endtest %}
