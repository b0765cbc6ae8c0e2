{#-
    Champion against challenger on the same purchases (those both scored), per day:
    each one's alerts, precision, recall and PR-AUC side by side, with the day's label
    maturity. A day without a challenger has no row.
-#}

with

shared as (

    select * from {{ ref('model_scores') }}
    where scored_by_both

),

metrics as (

    select * from (
        {{ quality_metrics('shared', ['day', 'model_role', 'model_version']) }}
    ) as quality

),

champion as (

    select * from metrics where model_role = 'champion'

),

challenger as (

    select * from metrics where model_role = 'challenger'

)

select
    champion.day,
    champion.purchases,
    champion.labelled_frauds,
    champion.model_version as champion_version,
    challenger.model_version as challenger_version,
    champion.alerts as champion_alerts,
    challenger.alerts as challenger_alerts,
    champion.precision_at_threshold as champion_precision,
    challenger.precision_at_threshold as challenger_precision,
    champion.recall_at_threshold as champion_recall,
    challenger.recall_at_threshold as challenger_recall,
    champion.pr_auc as champion_pr_auc,
    challenger.pr_auc as challenger_pr_auc,
    maturity.label_maturity,
    {{ as_of() }} as as_of
from champion
inner join challenger on challenger.day = champion.day
left join {{ ref('label_maturity_daily') }} as maturity on maturity.day = champion.day
