{#-
    Fails for every row where the boolean SQL expression is false. Rows where it is
    NULL (some input unknown) pass, so pair it with not_null where that matters.
-#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
