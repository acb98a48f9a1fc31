{#-
    numerator / denominator as a double, NULL when the denominator is not positive.
    A rate measured from zero members is undefined, and a negative start can only
    come from inconsistent source data, so neither gets a number.
-#}
{% macro safe_rate(numerator, denominator) -%}
    case when {{ denominator }} > 0 then cast({{ numerator }} as double) / {{ denominator }} end
{%- endmacro %}
