{#-
    Every purchase's feature values in long form (event_id, day, feature, value), read
    from ml_features.training_set: the point-in-time values the shared feature
    definitions give, the same the detector computed online (and the rules backtest
    reads). Only features that have a training reference are unpivoted; NaN (missing)
    becomes null.
-#}
-- depends_on: {{ ref('training_set') }}
-- depends_on: {{ ref('stg_model_reference') }}
{{
    config(
        materialized='view',
        tags=['ml', 'drift'],
    )
}}

{%- set features = [] -%}
{%- if execute -%}
    {%- set present = adapter.get_columns_in_relation(ref('training_set')) | map(attribute='name') | list -%}
    {%- set referenced = run_query(
        "select distinct feature from " ~ ref('stg_model_reference') ~ " where kind = 'feature' order by feature"
    ) -%}
    {%- for name in referenced.columns[0].values() if name in present -%}
        {%- do features.append(name) -%}
    {%- endfor -%}
{%- endif %}

{% if features %}
{% for name in features %}
select
    event_id,
    cast(occurred_at as date) as day,
    '{{ name }}' as feature,
    {{ nan_to_null('cast("' ~ name ~ '" as double)') }} as value
from {{ ref('training_set') }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
{% else %}
select
    cast(null as {{ dbt.type_string() }}) as event_id,
    cast(null as date) as day,
    cast(null as {{ dbt.type_string() }}) as feature,
    cast(null as double) as value
where 1 = 0
{% endif %}
