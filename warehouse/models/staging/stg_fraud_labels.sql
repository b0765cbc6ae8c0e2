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

parsed as (

    select
        *,
        {{ json_record('raw_json', label_fields()) }} as j
    from source

),

checked as (

    select
        *,
        {{ label_reject_reason() }} as reject_reason
    from parsed

),

renamed as (

    select
        _dedupe_key as label_id,
        event_id,
        {{ json_text('j', 'order_id') }} as order_id,
        user_id,
        occurred_at,
        {{ json_boolean('j', 'is_fraud') }} as is_fraud,
        {{ json_text('j', 'scenario') }} as scenario,
        coalesce({{ json_text('j', 'label_source') }}, 'chargeback') as label_source,
        {{ json_timestamp('j', 'known_at') }} as known_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
