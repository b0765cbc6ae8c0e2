{#-
    Drift per purchase day, model version and feature: the population stability index
    of the day's values against that version's training reference, and the day's
    missing share beside the training one. A day is compared with every version that
    scored purchases on it (champion and challenger). importance_rank is the feature's
    rank by the model's gain; the alert watches PSI > 0.2 on the top 10.
-#}
{{
    config(
        tags=['ml', 'drift'],
    )
}}

with

versions as (

    select distinct day, model_version
    from {{ ref('model_scores') }}

),

reference as (

    select * from {{ ref('stg_model_reference') }}
    where kind = 'feature'

),

feature_values as (

    select
        v.day,
        versions.model_version,
        v.feature,
        v.value
    from {{ ref('feature_values') }} as v
    inner join versions on versions.day = v.day

),

drift as (

    select * from (
        {{ psi_against_reference('feature_values', 'reference') }}
    ) as psi

)

select
    {{ dbt.concat(["cast(day as " ~ dbt.type_string() ~ ")", "':'", "model_version", "':'", "feature"]) }}
        as drift_day_id,
    day,
    model_version,
    feature,
    purchases,
    psi,
    missing_share,
    reference_missing_share,
    importance_rank,
    {{ as_of() }} as as_of
from drift
