{#- a / b as a double, null when b is 0 or null (rates on days without traffic). -#}
{% macro safe_divide(numerator, denominator) -%}
    case
        when coalesce({{ denominator }}, 0) = 0 then null
        else cast({{ numerator }} as double) / {{ denominator }}
    end
{%- endmacro %}
