{{
    config(
        unique_key='label_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'fraud_labels') }}
    where {{ loaded_since_last_run() }}

),

checked as (

    select
        *,
        {{ label_reject_reason() }} as reject_reason
    from source

),

renamed as (

    select
        _dedupe_key as label_id,
        event_id,
        {{ json_text('raw_json', 'order_id') }} as order_id,
        user_id,
        occurred_at,
        {{ json_boolean('raw_json', 'is_fraud') }} as is_fraud,
        {{ json_text('raw_json', 'scenario') }} as scenario,
        coalesce({{ json_text('raw_json', 'label_source') }}, 'chargeback') as label_source,
        {{ json_timestamp('raw_json', 'known_at') }} as known_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
