{#- The design's analytics.daily_sales, one row per purchase date. -#}
{{
    config(
        unique_key='purchase_date',
    )
}}

with

orders as (

    select * from {{ ref('fct_orders') }}
    where {{ key_changed_since_last_run('order_date', ref('fct_orders')) }}

),

daily as (

    select
        order_date as purchase_date,
        count(*) as total_orders,
        sum(amount) as total_revenue,
        cast(avg(amount) as decimal(18, 2)) as avg_order_value,
        count(distinct user_id) as customers,
        sum(case when band = 'decline' then 0 else amount end) as accepted_revenue,
        sum(case when is_confirmed_fraud then amount else 0 end) as fraud_revenue,
        max(_loaded_at) as _loaded_at
    from orders
    group by order_date

)

select * from daily
