{#-
    Live quality per purchase day and model version (champion and challenger): purchases,
    alert volume, precision and recall at the threshold, PR-AUC (average precision),
    the frauds labelled so far and the day's label maturity. Labels count only once
    known at as_of, so recent days read low until their chargebacks arrive: read
    precision and recall beside label_maturity.
-#}

with

metrics as (

    select * from (
        {{ quality_metrics(ref('model_scores'), ['day', 'model_role', 'model_version']) }}
    ) as quality

)

select
    {{ dbt.concat(["cast(metrics.day as " ~ dbt.type_string() ~ ")", "':'", "metrics.model_role", "':'", "metrics.model_version"]) }}
        as quality_day_id,
    metrics.*,
    maturity.label_maturity,
    maturity.mature_labels,
    {{ as_of() }} as as_of
from metrics
left join {{ ref('label_maturity_daily') }} as maturity on maturity.day = metrics.day
