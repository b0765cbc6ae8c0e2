{#-
    One row per purchase with everything the business and the fraud team know about it:
    the detector's decision, the alert, the ground-truth label and the analyst's review.
    A row is rebuilt whenever any of those arrives (labels come days later), so the
    incremental filter selects purchases touched by any staged source since the last run.
-#}
{{
    config(
        unique_key='event_id',
    )
}}

with

{% set sources_by_event = ['stg_purchases', 'stg_decisions', 'stg_fraud_alerts', 'stg_fraud_labels', 'stg_reviews'] %}

changed as (

    {% for model_name in sources_by_event %}
    select event_id from {{ ref(model_name) }}
    where {{ loaded_since_last_run() }}
    {% if not loop.last %}union{% endif %}
    {% endfor %}

),

purchases as (

    select * from {{ ref('stg_purchases') }}
    {% if is_incremental() %}
    where event_id in (select event_id from changed)
    {% endif %}

),

decisions as (

    select * from {{ ref('stg_decisions') }}
    where event_id in (select event_id from purchases)

),

alerts as (

    select * from {{ ref('stg_fraud_alerts') }}
    where event_id in (select event_id from purchases)

),

labels as (

    select
        event_id,
        max(case when is_fraud then 1 else 0 end) = 1 as is_fraud,
        max(scenario) as fraud_scenario,
        min(known_at) as label_known_at,
        max(_loaded_at) as _loaded_at
    from {{ ref('stg_fraud_labels') }}
    where event_id in (select event_id from purchases)
    group by event_id

),

latest_reviews as (

    select
        event_id,
        verdict,
        reviewed_at,
        reviewer,
        _loaded_at
    from {{ ref('stg_reviews') }}
    where event_id in (select event_id from purchases)
    qualify row_number() over (partition by event_id order by reviewed_at desc, review_id desc) = 1

),

joined as (

    select
        purchases.event_id,
        purchases.order_id,
        purchases.user_id,
        purchases.source,
        purchases.country,
        purchases.billing_country,
        purchases.payment_method,
        purchases.merchant_category,
        purchases.item_count,
        purchases.amount,
        purchases.currency,
        purchases.occurred_at,
        purchases.purchase_date as order_date,
        {{ dbt.date_trunc('hour', 'purchases.occurred_at') }} as order_hour,

        decisions.event_id is not null as is_decided,
        decisions.probability as fraud_probability,
        decisions.band,
        decisions.model_version,
        decisions.decided_at,
        decisions.detection_latency_ms,

        alerts.alert_id is not null as is_alerted,
        alerts.alert_id,
        alerts.severity as alert_severity,

        labels.event_id is not null as is_labelled,
        coalesce(labels.is_fraud, false) as is_fraud,
        labels.fraud_scenario,
        labels.label_known_at,

        latest_reviews.verdict as review_verdict,
        latest_reviews.reviewed_at,
        latest_reviews.reviewer,

        -- What the fraud team treats as fraud: an analyst's verdict wins over a label.
        case
            when latest_reviews.verdict = 'confirmed_fraud' then true
            when latest_reviews.verdict = 'false_positive' then false
            else coalesce(labels.is_fraud, false)
        end as is_confirmed_fraud,

        -- Latest load among the parts; every part is coalesced so greatest() sees no
        -- null (Snowflake's greatest returns null if any argument is null).
        greatest(
            purchases._loaded_at,
            coalesce(decisions._loaded_at, purchases._loaded_at),
            coalesce(alerts._loaded_at, purchases._loaded_at),
            coalesce(labels._loaded_at, purchases._loaded_at),
            coalesce(latest_reviews._loaded_at, purchases._loaded_at)
        ) as _loaded_at

    from purchases
    left join decisions on decisions.event_id = purchases.event_id
    left join alerts on alerts.event_id = purchases.event_id
    left join labels on labels.event_id = purchases.event_id
    left join latest_reviews on latest_reviews.event_id = purchases.event_id

)

select * from joined
