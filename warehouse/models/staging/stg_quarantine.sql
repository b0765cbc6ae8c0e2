{#-
    Every RAW row that staging refused, with the reason; nothing is dropped silently.
    Rows are keyed by (source table, dedupe key), so reruns add nothing twice.
-#}
{{
    config(
        unique_key='quarantine_id',
    )
}}

{% set checks = [
    ('purchase_events', purchase_fields(), purchase_reject_reason()),
    ('user_behavior', behavior_fields(), behavior_reject_reason()),
    ('decisions', decision_fields(), decision_reject_reason()),
    ('fraud_alerts', alert_fields(), alert_reject_reason()),
    ('fraud_labels', label_fields(), label_reject_reason()),
    ('reviews', review_fields(), review_reject_reason()),
] %}

with

{% for table_name, fields, reason in checks %}
{{ table_name }}_parsed as (

    select
        *,
        {{ json_record('raw_json', fields) }} as j
    from {{ source('raw', table_name) }}
    where {{ loaded_since_last_run() }}

),

{{ table_name }} as (

    select
        '{{ table_name }}' as source_table,
        _dedupe_key,
        event_id,
        {{ reason }} as reject_reason,
        coalesce(cast(raw_json as {{ dbt.type_string() }}), raw_text) as raw_record,
        _topic,
        _partition,
        _offset,
        _loaded_at
    from {{ table_name }}_parsed

),
{% endfor %}

rejected as (

    {% for table_name, _, _ in checks %}
    select * from {{ table_name }} where reject_reason is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    {{ dbt.concat(['source_table', "'/'", '_dedupe_key']) }} as quarantine_id,
    *
from rejected
