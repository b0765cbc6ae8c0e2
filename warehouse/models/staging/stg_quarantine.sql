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
    ('purchase_events', purchase_reject_reason()),
    ('user_behavior', behavior_reject_reason()),
    ('decisions', decision_reject_reason()),
    ('fraud_alerts', alert_reject_reason()),
    ('fraud_labels', label_reject_reason()),
    ('reviews', review_reject_reason()),
] %}

with

{% for table_name, reason in checks %}
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
    from {{ source('raw', table_name) }}
    where {{ loaded_since_last_run() }}

),
{% endfor %}

rejected as (

    {% for table_name, _ in checks %}
    select * from {{ table_name }} where reject_reason is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    {{ dbt.concat(['source_table', "'/'", '_dedupe_key']) }} as quarantine_id,
    *
from rejected
