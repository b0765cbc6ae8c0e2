{#-
    Every RAW row that staging refused, with the reason; nothing is dropped silently.
    Rows are keyed by (source table, dedupe key), so reruns add nothing twice.

    A new RAW row is refused exactly when its staging model did not keep it, so only
    those rows (an anti-join on the staged key) are parsed again to name the reason.
-#}
{{
    config(
        unique_key='quarantine_id',
    )
}}

{#- (raw table, its staging model, the staged key matching raw._dedupe_key, fields, reason) -#}
{% set checks = [
    ('purchase_events', 'stg_purchases', 'event_id', purchase_fields(), purchase_reject_reason()),
    ('user_behavior', 'stg_behavior_events', 'event_id', behavior_fields(), behavior_reject_reason()),
    ('decisions', 'stg_decisions', 'event_id', decision_fields(), decision_reject_reason()),
    ('fraud_alerts', 'stg_fraud_alerts', 'event_id', alert_fields(), alert_reject_reason()),
    ('fraud_labels', 'stg_fraud_labels', 'label_id', label_fields(), label_reject_reason()),
    ('reviews', 'stg_reviews', 'review_id', review_fields(), review_reject_reason()),
] %}

with

{% for table_name, staged_model, staged_key, fields, reason in checks %}
{{ table_name }}_parsed as (

    select
        raw.*,
        {{ json_record('raw.raw_json', fields) }} as j
    from {{ source('raw', table_name) }} as raw
    left join {{ ref(staged_model) }} as staged
        on staged.{{ staged_key }} = raw._dedupe_key
    where staged.{{ staged_key }} is null
        and {{ loaded_since_last_run('raw._loaded_at') }}

),

{{ table_name }} as (

    select
        '{{ table_name }}' as source_table,
        _dedupe_key,
        event_id,
        {{ reason }} as reject_reason,
        coalesce({{ json_to_text('raw_json') }}, raw_text) as raw_record,
        _topic,
        _partition,
        _offset,
        _loaded_at
    from {{ table_name }}_parsed

),
{% endfor %}

rejected as (

    {% for table_name, _, _, _, _ in checks %}
    select * from {{ table_name }} where reject_reason is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    {{ dbt.concat(['source_table', "'/'", '_dedupe_key']) }} as quarantine_id,
    *
from rejected
