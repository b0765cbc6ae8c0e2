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

parsed as (

    select
        *,
        {{ json_record('raw_json', alert_fields()) }} as j
    from source

),

checked as (

    select
        *,
        {{ alert_reject_reason() }} as reject_reason
    from parsed

),

renamed as (

    select
        {{ json_text('j', 'alert_id') }} as alert_id,
        event_id,
        {{ json_text('j', 'order_id') }} as order_id,
        user_id,
        source,
        occurred_at,
        {{ json_double('j', 'amount') }} as amount,
        {{ json_double('j', 'probability') }} as probability,
        {{ json_text('j', 'severity') }} as severity,
        {{ json_text('j', 'band') }} as band,
        {{ json_text('j', 'model_version') }} as model_version,
        {{ json_timestamp('j', 'decided_at') }} as decided_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
