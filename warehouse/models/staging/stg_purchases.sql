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

parsed as (

    select
        *,
        {{ json_record('raw_json', purchase_fields()) }} as j
    from source

),

checked as (

    select
        *,
        {{ purchase_reject_reason() }} as reject_reason
    from parsed

),

renamed as (

    select
        event_id,
        {{ json_text('j', 'order_id') }} as order_id,
        user_id,
        source,
        occurred_at,
        cast(occurred_at as date) as purchase_date,
        cast({{ json_double('j', 'amount') }} as decimal(18, 2)) as amount,
        coalesce({{ json_text('j', 'currency') }}, 'USD') as currency,
        {{ json_integer('j', 'item_count') }} as item_count,
        {{ json_text('j', 'payment_method') }} as payment_method,
        {{ json_text('j', 'card_fingerprint') }} as card_fingerprint,
        {{ json_text('j', 'device_fingerprint') }} as device_fingerprint,
        {{ json_text('j', 'ip_fingerprint') }} as ip_fingerprint,
        {{ json_text('j', 'country') }} as country,
        {{ json_text('j', 'billing_country') }} as billing_country,
        {{ json_text('j', 'shipping_country') }} as shipping_country,
        {{ json_text('j', 'merchant_category') }} as merchant_category,
        {{ json_text('j', 'store_id') }} as store_id,
        {{ json_text('j', 'terminal_id') }} as terminal_id,
        {{ json_text('j', 'shipping_address_hash') }} as shipping_address_hash,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
