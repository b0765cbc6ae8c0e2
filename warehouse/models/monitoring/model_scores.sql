{#-
    One row per decided purchase and model: the champion's probability (every decision)
    and the challenger's (where it scored the purchase beside the champion), each with
    the truth known at as_of: an analyst's verdict wins over a chargeback label, and a
    purchase with neither counts as not (yet) fraud.
-#}
{{
    config(
        materialized='view',
    )
}}

with

decisions as (

    select
        event_id,
        occurred_at,
        cast(occurred_at as date) as day,
        probability,
        coalesce(threshold, {{ var('alert_threshold') }}) as threshold,
        model_version,
        challenger_version,
        challenger_probability
    from {{ ref('stg_decisions') }}
    where occurred_at <= {{ as_of() }}

),

labels as (

    select
        event_id,
        max(case when is_fraud then 1 else 0 end) = 1 as is_fraud
    from {{ ref('stg_fraud_labels') }}
    where known_at <= {{ as_of() }}
    group by event_id

),

reviews as (

    select
        event_id,
        verdict
    from {{ ref('stg_reviews') }}
    where reviewed_at <= {{ as_of() }}
    qualify row_number() over (partition by event_id order by reviewed_at desc, review_id desc) = 1

),

truth as (

    select
        decisions.event_id,
        case
            when reviews.verdict = 'confirmed_fraud' then true
            when reviews.verdict = 'false_positive' then false
            else coalesce(labels.is_fraud, false)
        end as is_known_fraud
    from decisions
    left join labels on labels.event_id = decisions.event_id
    left join reviews on reviews.event_id = decisions.event_id

),

champion as (

    select
        event_id,
        day,
        'champion' as model_role,
        model_version,
        probability,
        threshold,
        challenger_probability is not null and challenger_version is not null as scored_by_both
    from decisions
    where model_version is not null

),

challenger as (

    select
        event_id,
        day,
        'challenger' as model_role,
        challenger_version as model_version,
        challenger_probability as probability,
        threshold,
        true as scored_by_both
    from decisions
    where challenger_probability is not null and challenger_version is not null

),

scores as (

    select * from champion
    union all
    select * from challenger

)

select
    scores.event_id,
    scores.day,
    scores.model_role,
    scores.model_version,
    scores.probability,
    scores.threshold,
    scores.scored_by_both,
    truth.is_known_fraud
from scores
inner join truth on truth.event_id = scores.event_id
