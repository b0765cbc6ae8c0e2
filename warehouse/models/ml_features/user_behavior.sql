{#- The design's ml_features.user_behavior, one row per customer. -#}
with

orders as (

    select * from {{ ref('fct_orders') }}

),

as_of as (

    select max(occurred_at) as as_of_at from orders

),

per_user as (

    select
        user_id,
        count(*) as total_purchases,
        cast(avg(amount) as decimal(10, 2)) as avg_purchase_amount,
        max(occurred_at) as last_purchase_at,
        max(case when is_confirmed_fraud then 1 else 0 end) = 1 as is_fraud_label
    from orders
    group by user_id

)

select
    per_user.user_id,
    per_user.total_purchases,
    per_user.avg_purchase_amount,
    {{ dbt.datediff('per_user.last_purchase_at', 'as_of.as_of_at', 'day') }} as days_since_last_purchase,
    per_user.is_fraud_label
from per_user
cross join as_of
