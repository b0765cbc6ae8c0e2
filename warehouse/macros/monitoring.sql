{#-
    Live model quality and drift (models/monitoring, docs/model-ops.md).

    as_of(): the build's "as of" time, `--vars '{as_of: "2026-12-01 00:00:00"}'`, else now
    (UTC). Only labels and reviews known by then count, and label maturity is measured
    at it, so rebuilding with a past as_of reproduces what was known on that day.
-#}
{% macro as_of() -%}
    {%- if var('as_of', none) -%}
        cast('{{ var("as_of") }}' as timestamp)
    {%- else -%}
        {{ utc_now() }}
    {%- endif -%}
{%- endmacro %}

{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'shopsentry')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
    timezone('UTC', now())
{%- endmacro %}

{% macro snowflake__utc_now() -%}
    convert_timezone('UTC', current_timestamp())::timestamp_ntz
{%- endmacro %}


{#- A float as null when it is NaN (the training set stores missing features as NaN). -#}
{% macro nan_to_null(expression) -%}
    {{ return(adapter.dispatch('nan_to_null', 'shopsentry')(expression)) }}
{%- endmacro %}

{% macro default__nan_to_null(expression) -%}
    case when isnan({{ expression }}) then null else {{ expression }} end
{%- endmacro %}

{% macro snowflake__nan_to_null(expression) -%}
    iff({{ expression }} = 'NaN'::float, null, {{ expression }})
{%- endmacro %}


{#-
    Quality at the threshold per group of `keys` over `scores` (one row per purchase and
    model: probability, threshold, is_known_fraud). PR-AUC is average precision, as
    sklearn computes it: the mean, over the known frauds, of the precision at their
    score (ties share one threshold: `range` frames count every purchase with an equal
    or higher score).
-#}
{% macro quality_metrics(scores, keys) -%}
    with

    ranked as (

        select
            {{ keys | join(', ') }},
            probability,
            threshold,
            is_known_fraud,
            sum(case when is_known_fraud then 1 else 0 end) over (
                partition by {{ keys | join(', ') }}
                order by probability desc
                range between unbounded preceding and current row
            ) as frauds_above,
            count(*) over (
                partition by {{ keys | join(', ') }}
                order by probability desc
                range between unbounded preceding and current row
            ) as purchases_above
        from {{ scores }}

    ),

    aggregated as (

        select
            {{ keys | join(', ') }},
            count(*) as purchases,
            sum(case when probability >= threshold then 1 else 0 end) as alerts,
            sum(case when is_known_fraud then 1 else 0 end) as labelled_frauds,
            sum(case when is_known_fraud and probability >= threshold then 1 else 0 end)
                as true_positives,
            sum(
                case when is_known_fraud then cast(frauds_above as double) / purchases_above else 0 end
            ) as precision_sum
        from ranked
        group by {{ keys | join(', ') }}

    )

    select
        {{ keys | join(', ') }},
        purchases,
        alerts,
        labelled_frauds,
        true_positives,
        {{ safe_divide('alerts', 'purchases') }} as alert_rate,
        {{ safe_divide('true_positives', 'alerts') }} as precision_at_threshold,
        {{ safe_divide('true_positives', 'labelled_frauds') }} as recall_at_threshold,
        {{ safe_divide('precision_sum', 'labelled_frauds') }} as pr_auc
    from aggregated
{%- endmacro %}


{#-
    PSI and missing share per (day, model_version, feature) of `values` (columns day,
    model_version, feature, value; null = missing) against `reference` (the model's
    training bins). Every reference bin takes part, an empty one with share 0; shares
    are floored at 1e-4 on both sides so an empty bin adds a finite term.
-#}
{% macro psi_against_reference(values, reference) -%}
    with

    totals as (

        select
            day,
            model_version,
            feature,
            count(*) as purchases,
            sum(case when value is null then 1 else 0 end) as missing
        from {{ values }}
        group by day, model_version, feature

    ),

    counted as (

        select
            v.day,
            v.model_version,
            v.feature,
            r.bin,
            count(*) as observed
        from {{ values }} as v
        inner join {{ reference }} as r
            on r.model_version = v.model_version
            and r.feature = v.feature
            and (r.lower_edge is null or v.value >= r.lower_edge)
            and (r.upper_edge is null or v.value < r.upper_edge)
        where v.value is not null
        group by v.day, v.model_version, v.feature, r.bin

    ),

    shares as (

        select
            t.day,
            t.model_version,
            t.feature,
            t.purchases,
            t.missing,
            r.missing_share as reference_missing_share,
            r.importance_rank,
            r.expected_share,
            case
                when t.purchases > t.missing
                    then cast(coalesce(c.observed, 0) as double) / (t.purchases - t.missing)
                else 0
            end as actual_share
        from totals as t
        inner join {{ reference }} as r
            on r.model_version = t.model_version
            and r.feature = t.feature
        left join counted as c
            on c.day = t.day
            and c.model_version = t.model_version
            and c.feature = t.feature
            and c.bin = r.bin

    )

    select
        day,
        model_version,
        feature,
        max(purchases) as purchases,
        cast(max(missing) as double) / max(purchases) as missing_share,
        max(reference_missing_share) as reference_missing_share,
        max(importance_rank) as importance_rank,
        case
            when max(purchases) > max(missing) then sum(
                (greatest(actual_share, 1e-4) - greatest(expected_share, 1e-4))
                * ln(greatest(actual_share, 1e-4) / greatest(expected_share, 1e-4))
            )
        end as psi
    from shares
    group by day, model_version, feature
{%- endmacro %}
