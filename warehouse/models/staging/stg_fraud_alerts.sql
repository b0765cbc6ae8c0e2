{{
    config(
        unique_key='alert_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'fraud_alerts') }}
    where {{ loaded_since_last_run() }}

),

checked as (

    select
        *,
        {{ alert_reject_reason() }} as reject_reason
    from source

),

renamed as (

    select
        {{ json_text('raw_json', 'alert_id') }} as alert_id,
        event_id,
        {{ json_text('raw_json', 'order_id') }} as order_id,
        user_id,
        source,
        occurred_at,
        {{ json_double('raw_json', 'amount') }} as amount,
        {{ json_double('raw_json', 'probability') }} as probability,
        {{ json_text('raw_json', 'severity') }} as severity,
        {{ json_text('raw_json', 'band') }} as band,
        {{ json_text('raw_json', 'model_version') }} as model_version,
        {{ json_timestamp('raw_json', 'decided_at') }} as decided_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
