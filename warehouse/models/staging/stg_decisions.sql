{{
    config(
        unique_key='event_id',
        on_schema_change='append_new_columns',
    )
}}

with

source as (

    select * from {{ source('raw', 'decisions') }}
    where {{ loaded_since_last_run() }}

),

parsed as (

    select
        *,
        {{ json_record('raw_json', decision_fields()) }} as j
    from source

),

checked as (

    select
        *,
        {{ decision_reject_reason() }} as reject_reason
    from parsed

),

renamed as (

    select
        event_id,
        {{ json_text('j', 'order_id') }} as order_id,
        user_id,
        source,
        occurred_at,
        {{ json_double('j', 'amount') }} as amount,
        {{ json_double('j', 'probability') }} as probability,
        {{ json_text('j', 'band') }} as band,
        {{ json_double('j', 'threshold') }} as threshold,
        {{ json_text('j', 'model_version') }} as model_version,
        {{ json_timestamp('j', 'decided_at') }} as decided_at,
        {{ json_text('j', 'challenger_version') }} as challenger_version,
        {{ json_double('j', 'challenger_probability') }} as challenger_probability,
        {{ json_text('j', 'challenger_band') }} as challenger_band,
        {{ json_text('j', 'served_by') }} as served_by,
        _loaded_at
    from checked
    where reject_reason is null

)

select
    *,
    {{ dbt.datediff('occurred_at', 'decided_at', 'millisecond') }} as detection_latency_ms
from renamed
