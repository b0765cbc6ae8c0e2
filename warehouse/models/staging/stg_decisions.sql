{{
    config(
        unique_key='event_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'decisions') }}
    where {{ loaded_since_last_run() }}

),

checked as (

    select
        *,
        {{ decision_reject_reason() }} as reject_reason
    from source

),

renamed as (

    select
        event_id,
        {{ json_text('raw_json', 'order_id') }} as order_id,
        user_id,
        source,
        occurred_at,
        {{ json_double('raw_json', 'amount') }} as amount,
        {{ json_double('raw_json', 'probability') }} as probability,
        {{ json_text('raw_json', 'band') }} as band,
        {{ json_double('raw_json', 'threshold') }} as threshold,
        {{ json_text('raw_json', 'model_version') }} as model_version,
        {{ json_timestamp('raw_json', 'decided_at') }} as decided_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select
    *,
    {{ dbt.datediff('occurred_at', 'decided_at', 'millisecond') }} as detection_latency_ms
from renamed
