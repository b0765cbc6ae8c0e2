{#- Sales per hour: what the hourly ETL publishes for the dashboard's recent view. -#}
{{
    config(
        unique_key='order_hour',
    )
}}

with

orders as (

    select * from {{ ref('fct_orders') }}
    where {{ key_changed_since_last_run('order_hour', ref('fct_orders')) }}

),

hourly as (

    select
        order_hour,
        min(order_date) as order_date,
        count(*) as total_orders,
        sum(amount) as total_revenue,
        cast(avg(amount) as decimal(18, 2)) as avg_order_value,
        count(distinct user_id) as customers,
        sum(case when is_alerted then 1 else 0 end) as alerts,
        max(_loaded_at) as _loaded_at
    from orders
    group by order_hour

)

select * from hourly
