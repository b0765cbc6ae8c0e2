{#- Rows where the column is not strictly greater than `value` (nulls are not_null's job). -#}
{% test greater_than(model, column_name, value) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} <= {{ value }}

{% endtest %}
