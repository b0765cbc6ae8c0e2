{#-
    Daily sales split by source (web / mobile / pos), country and payment method, one
    row per (day, dimension, segment). A changed day is rebuilt whole.
-#}
{{
    config(
        unique_key='order_date',
    )
}}

{% set dimensions = ['source', 'country', 'payment_method'] %}

with

orders as (

    select * from {{ ref('fct_orders') }}
    where {{ key_changed_since_last_run('order_date', ref('fct_orders')) }}

),

{% for dimension in dimensions %}
by_{{ dimension }} as (

    select
        order_date,
        '{{ dimension }}' as dimension,
        coalesce({{ dimension }}, 'unknown') as segment,
        count(*) as total_orders,
        sum(amount) as total_revenue,
        cast(avg(amount) as decimal(18, 2)) as avg_order_value,
        sum(case when is_alerted then 1 else 0 end) as alerts,
        sum(case when is_confirmed_fraud then 1 else 0 end) as confirmed_fraud,
        max(_loaded_at) as _loaded_at
    from orders
    group by order_date, coalesce({{ dimension }}, 'unknown')

),
{% endfor %}

unioned as (

    {% for dimension in dimensions %}
    select * from by_{{ dimension }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    {{ dbt.concat([
        "cast(order_date as " ~ dbt.type_string() ~ ")", "'|'", 'dimension', "'|'", 'segment'
    ]) }} as segment_day_id,
    unioned.*
from unioned
