{#-
    Fails for every non-NULL value of the column outside [min_value, max_value]
    (or the open interval when inclusive=false). Either bound may be omitted.
    NULLs pass: not_null is a separate test.
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

{%- set lower_op = '>=' if inclusive else '>' -%}
{%- set upper_op = '<=' if inclusive else '<' %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and not (
      true
      {%- if min_value is not none %} and {{ column_name }} {{ lower_op }} {{ min_value }}{% endif %}
      {%- if max_value is not none %} and {{ column_name }} {{ upper_op }} {{ max_value }}{% endif %}
  )

{% endtest %}
