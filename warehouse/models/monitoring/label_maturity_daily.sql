{#-
    Label maturity per purchase day: the share of that day's fraud expected to be known
    by as_of. The delay distribution is the one observed on mature days: the fraud
    labels (chargebacks and review labels) of purchases at least
    var('label_maturity_days') old at as_of, known by then; a day of age A (from its
    midday to as_of) is mature to the share of those delays <= A. Without mature
    labels the maturity is null (not guessed).
-#}

with

days as (

    select distinct cast(occurred_at as date) as day
    from {{ ref('stg_decisions') }}
    where occurred_at <= {{ as_of() }}

),

delays as (

    select
        {{ dbt.datediff('occurred_at', 'known_at', 'second') }} / 86400.0 as delay_days
    from {{ ref('stg_fraud_labels') }}
    where is_fraud
        and known_at <= {{ as_of() }}
        and occurred_at <= {{ dbt.dateadd('second', '-' ~ (var('label_maturity_days') * 86400) | int, as_of()) }}

),

aged as (

    select
        day,
        {{ dbt.datediff(dbt.dateadd('hour', 12, 'cast(day as timestamp)'), as_of(), 'second') }} / 86400.0
            as age_days
    from days

),

matured as (

    select
        aged.day,
        aged.age_days,
        count(delays.delay_days) as mature_labels,
        avg(case when delays.delay_days <= aged.age_days then 1.0 else 0.0 end) as label_maturity
    from aged
    cross join delays
    group by aged.day, aged.age_days

)

select
    aged.day,
    aged.age_days,
    coalesce(matured.mature_labels, 0) as mature_labels,
    matured.label_maturity
from aged
left join matured on matured.day = aged.day
