{#-
    Drift of each model's score per purchase day: the PSI of the day's probabilities
    (the challenger's from challenger_probability) against the scores the model gave its
    own training rows. The alert fires on PSI > 0.1.
-#}

with

reference as (

    select * from {{ ref('stg_model_reference') }}
    where kind = 'score'

),

scores as (

    select
        day,
        model_version,
        model_role,
        'score' as feature,
        probability as value
    from {{ ref('model_scores') }}

),

roles as (

    select day, model_version, min(model_role) as model_role
    from scores
    group by day, model_version

),

drift as (

    select * from (
        {{ psi_against_reference('scores', 'reference') }}
    ) as psi

)

select
    {{ dbt.concat(["cast(drift.day as " ~ dbt.type_string() ~ ")", "':'", "drift.model_version"]) }}
        as drift_day_id,
    drift.day,
    drift.model_version,
    roles.model_role,
    drift.purchases,
    drift.psi,
    {{ as_of() }} as as_of
from drift
inner join roles on roles.day = drift.day and roles.model_version = drift.model_version
