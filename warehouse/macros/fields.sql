{#-
    The JSON fields each staging model reads, named once: the stg_ model and
    stg_quarantine parse the same record, so their checks can never disagree.
-#}

{% macro purchase_fields() -%}
    {{ return(['order_id', 'amount', 'currency', 'item_count', 'payment_method', 'card_fingerprint',
               'device_fingerprint', 'ip_fingerprint', 'country', 'billing_country', 'shipping_country',
               'merchant_category', 'store_id', 'terminal_id', 'shipping_address_hash']) }}
{%- endmacro %}

{% macro behavior_fields() -%}
    {{ return(['country', 'device_fingerprint', 'ip_fingerprint', 'page', 'query', 'product_id',
               'quantity', 'price', 'reason', 'new_country', 'payment_method']) }}
{%- endmacro %}

{% macro decision_fields() -%}
    {{ return(['order_id', 'amount', 'probability', 'band', 'threshold', 'model_version', 'decided_at',
               'challenger_version', 'challenger_probability', 'challenger_band', 'served_by']) }}
{%- endmacro %}

{% macro alert_fields() -%}
    {{ return(['alert_id', 'order_id', 'amount', 'probability', 'severity', 'band', 'model_version',
               'decided_at']) }}
{%- endmacro %}

{% macro label_fields() -%}
    {{ return(['order_id', 'is_fraud', 'scenario', 'label_source', 'known_at']) }}
{%- endmacro %}

{% macro review_fields() -%}
    {{ return(['alert_id', 'verdict', 'reviewer', 'note']) }}
{%- endmacro %}
