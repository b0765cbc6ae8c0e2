{#-
    Why a RAW row cannot be staged, or null when it can, read from the parsed record j
    (see fields.sql). One definition per entity,
    used by the stg_ model (keeps rows whose reason is null) and by stg_quarantine
    (keeps the others, with the reason), so nothing is dropped silently and the two
    never disagree. Reasons name the field first, like the stream's dead-letter headers.
-#}

{% macro common_reject_checks(expected_types) -%}
    when raw_json is null then 'raw_json: not valid JSON'
    when event_id is null then 'event_id: missing'
    when event_type is null or event_type not in (
        {%- for t in expected_types %}'{{ t }}'{{ "," if not loop.last }}{% endfor -%}
    ) then 'event_type: not one of {{ expected_types | join(", ") }}'
    when user_id is null then 'user_id: missing'
    when occurred_at is null then 'occurred_at: missing or not a timestamp'
{%- endmacro %}

{% macro purchase_reject_reason() -%}
    case
        {{ common_reject_checks(['purchase']) }}
        when {{ json_text('j', 'order_id') }} is null then 'order_id: missing'
        when {{ json_double('j', 'amount') }} is null then 'amount: missing or not a number'
        when {{ json_double('j', 'amount') }} <= 0 then 'amount: must be greater than 0'
        when source is null or source not in ('web', 'mobile', 'pos') then 'source: not web, mobile or pos'
    end
{%- endmacro %}

{% macro behavior_reject_reason() -%}
    case
        {{ common_reject_checks(['page_view', 'search', 'add_to_cart', 'login', 'failed_login',
                                 'password_change', 'address_change', 'payment_method_added']) }}
        when source is null or source not in ('web', 'mobile', 'pos') then 'source: not web, mobile or pos'
    end
{%- endmacro %}

{% macro decision_reject_reason() -%}
    case
        {{ common_reject_checks(['decision']) }}
        when {{ json_double('j', 'probability') }} is null then 'probability: missing or not a number'
        when {{ json_double('j', 'probability') }} < 0
            or {{ json_double('j', 'probability') }} > 1 then 'probability: outside 0..1'
        when {{ json_timestamp('j', 'decided_at') }} is null then 'decided_at: missing or not a timestamp'
    end
{%- endmacro %}

{% macro alert_reject_reason() -%}
    case
        {{ common_reject_checks(['fraud_alert']) }}
        when {{ json_text('j', 'alert_id') }} is null then 'alert_id: missing'
        when {{ json_double('j', 'probability') }} is null then 'probability: missing or not a number'
        when {{ json_timestamp('j', 'decided_at') }} is null then 'decided_at: missing or not a timestamp'
    end
{%- endmacro %}

{% macro label_reject_reason() -%}
    case
        {{ common_reject_checks(['label']) }}
        when {{ json_boolean('j', 'is_fraud') }} is null then 'is_fraud: missing or not a boolean'
        when {{ json_timestamp('j', 'known_at') }} is null then 'known_at: missing or not a timestamp'
    end
{%- endmacro %}

{% macro review_reject_reason() -%}
    case
        when raw_json is null then 'raw_json: not valid JSON'
        when event_id is null then 'event_id: missing'
        when {{ json_text('j', 'alert_id') }} is null then 'alert_id: missing'
        when {{ json_text('j', 'verdict') }} is null
            or {{ json_text('j', 'verdict') }} not in ('confirmed_fraud', 'false_positive')
            then 'verdict: not confirmed_fraud or false_positive'
        when occurred_at is null then 'reviewed_at: missing or not a timestamp'
    end
{%- endmacro %}
