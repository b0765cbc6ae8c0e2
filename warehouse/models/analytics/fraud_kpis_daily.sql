{#-
    The fraud team's daily numbers, by purchase date (the cohort a late label or a
    review updates): alert rate, confirmed fraud, detection rate, the false-positive rate
    from analyst reviews, loss prevented and the detector's latency.
-#}
{{
    config(
        unique_key='order_date',
    )
}}

with

orders as (

    select * from {{ ref('fct_orders') }}
    where {{ key_changed_since_last_run('order_date', ref('fct_orders')) }}

),

daily as (

    select
        order_date,
        count(*) as orders,
        sum(case when is_decided then 1 else 0 end) as decided_orders,
        sum(case when is_alerted then 1 else 0 end) as alerts,
        sum(case when band = 'decline' then 1 else 0 end) as declined,
        sum(case when is_confirmed_fraud then 1 else 0 end) as confirmed_fraud,
        sum(case when is_confirmed_fraud and is_alerted then 1 else 0 end) as detected_fraud,
        sum(case when review_verdict is not null then 1 else 0 end) as reviewed_alerts,
        sum(case when review_verdict = 'confirmed_fraud' then 1 else 0 end) as review_confirmed,
        sum(case when review_verdict = 'false_positive' then 1 else 0 end) as review_false_positives,
        sum(case when is_alerted and is_confirmed_fraud then amount else 0 end) as loss_prevented,
        sum(case when is_confirmed_fraud and not is_alerted then amount else 0 end) as fraud_loss,
        sum(amount) as revenue,
        avg(detection_latency_ms) as detection_latency_avg_ms,
        percentile_cont(0.5) within group (order by detection_latency_ms) as detection_latency_p50_ms,
        percentile_cont(0.95) within group (order by detection_latency_ms) as detection_latency_p95_ms,
        max(detection_latency_ms) as detection_latency_max_ms,
        max(_loaded_at) as _loaded_at
    from orders
    group by order_date

)

select
    order_date,
    orders,
    decided_orders,
    alerts,
    declined,
    {{ safe_divide('alerts', 'decided_orders') }} as alert_rate,
    confirmed_fraud,
    detected_fraud,
    {{ safe_divide('detected_fraud', 'confirmed_fraud') }} as fraud_detection_rate,
    reviewed_alerts,
    review_confirmed,
    review_false_positives,
    -- The design's target: false positive rate < 5%, measured on the alerts analysts reviewed.
    {{ safe_divide('review_false_positives', 'reviewed_alerts') }} as false_positive_rate,
    {{ safe_divide('review_confirmed', 'reviewed_alerts') }} as review_precision,
    loss_prevented,
    fraud_loss,
    revenue,
    detection_latency_avg_ms,
    detection_latency_p50_ms,
    detection_latency_p95_ms,
    detection_latency_max_ms,
    _loaded_at
from daily
