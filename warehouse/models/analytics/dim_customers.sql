{#-
    One row per customer: RFM (recency, frequency, monetary) scores in quintiles and
    lifetime value. "Now" is the newest purchase in the warehouse, not the wall clock, so
    a rebuild over the same data gives the same scores.
-#}
{{
    config(
        materialized='table',
    )
}}

with

orders as (

    select * from {{ ref('fct_orders') }}

),

as_of as (

    select max(occurred_at) as as_of_at from orders

),

customers as (

    select
        user_id,
        min(occurred_at) as first_order_at,
        max(occurred_at) as last_order_at,
        count(*) as orders,
        sum(amount) as gross_revenue,
        sum(case when is_confirmed_fraud then 0 else amount end) as lifetime_value,
        cast(avg(amount) as decimal(18, 2)) as avg_order_value,
        sum(case when is_confirmed_fraud then 1 else 0 end) as confirmed_fraud_orders,
        sum(case when is_alerted then 1 else 0 end) as alerted_orders
    from orders
    group by user_id

),

scored as (

    select
        customers.*,
        {{ dbt.datediff('customers.last_order_at', 'as_of.as_of_at', 'day') }} as recency_days,
        {{ dbt.datediff('customers.first_order_at', 'as_of.as_of_at', 'day') }} + 1 as tenure_days,
        ntile(5) over (order by customers.last_order_at, customers.user_id) as recency_score,
        ntile(5) over (order by customers.orders, customers.user_id) as frequency_score,
        ntile(5) over (order by customers.lifetime_value, customers.user_id) as monetary_score
    from customers
    cross join as_of

)

select
    user_id,
    first_order_at,
    last_order_at,
    orders,
    gross_revenue,
    lifetime_value,
    avg_order_value,
    -- Yearly value at the customer's pace so far (orders per day of tenure).
    cast(lifetime_value * 365.0 / tenure_days as decimal(18, 2)) as projected_annual_value,
    confirmed_fraud_orders,
    alerted_orders,
    recency_days,
    tenure_days,
    recency_score,
    frequency_score,
    monetary_score,
    case
        when recency_score >= 4 and frequency_score >= 4 and monetary_score >= 4 then 'champion'
        when recency_score >= 3 and frequency_score >= 3 then 'loyal'
        when recency_score >= 4 then 'promising'
        when recency_score <= 2 and frequency_score >= 3 then 'at_risk'
        when recency_score <= 2 then 'hibernating'
        else 'needs_attention'
    end as rfm_segment
from scored
