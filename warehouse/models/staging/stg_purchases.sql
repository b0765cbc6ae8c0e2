{{
    config(
        unique_key='event_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'purchase_events') }}
    where {{ loaded_since_last_run() }}

),

checked as (

    select
        *,
        {{ purchase_reject_reason() }} as reject_reason
    from source

),

renamed as (

    select
        event_id,
        {{ json_text('raw_json', 'order_id') }} as order_id,
        user_id,
        source,
        occurred_at,
        cast(occurred_at as date) as purchase_date,
        cast({{ json_double('raw_json', 'amount') }} as decimal(18, 2)) as amount,
        coalesce({{ json_text('raw_json', 'currency') }}, 'USD') as currency,
        {{ json_integer('raw_json', 'item_count') }} as item_count,
        {{ json_text('raw_json', 'payment_method') }} as payment_method,
        {{ json_text('raw_json', 'card_fingerprint') }} as card_fingerprint,
        {{ json_text('raw_json', 'device_fingerprint') }} as device_fingerprint,
        {{ json_text('raw_json', 'ip_fingerprint') }} as ip_fingerprint,
        {{ json_text('raw_json', 'country') }} as country,
        {{ json_text('raw_json', 'billing_country') }} as billing_country,
        {{ json_text('raw_json', 'shipping_country') }} as shipping_country,
        {{ json_text('raw_json', 'merchant_category') }} as merchant_category,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
