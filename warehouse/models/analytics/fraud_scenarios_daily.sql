{#- Confirmed fraud per day and scenario (card testing, account takeover, ...). -#}
{{
    config(
        unique_key='order_date',
    )
}}

with

orders as (

    select * from {{ ref('fct_orders') }}
    where is_confirmed_fraud
        and {{ key_changed_since_last_run('order_date', ref('fct_orders')) }}

),

by_scenario as (

    select
        order_date,
        coalesce(fraud_scenario, 'unknown') as scenario,
        count(*) as fraud_orders,
        sum(case when is_alerted then 1 else 0 end) as detected,
        sum(amount) as fraud_amount,
        sum(case when is_alerted then amount else 0 end) as loss_prevented,
        max(_loaded_at) as _loaded_at
    from orders
    group by order_date, coalesce(fraud_scenario, 'unknown')

)

select
    {{ dbt.concat(["cast(order_date as " ~ dbt.type_string() ~ ")", "'|'", 'scenario']) }} as scenario_day_id,
    by_scenario.*
from by_scenario
