{{
    config(
        unique_key='event_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'user_behavior') }}
    where {{ loaded_since_last_run() }}

),

checked as (

    select
        *,
        {{ behavior_reject_reason() }} as reject_reason
    from source

),

renamed as (

    select
        event_id,
        event_type,
        user_id,
        source,
        occurred_at,
        cast(occurred_at as date) as activity_date,
        {{ json_text('raw_json', 'country') }} as country,
        {{ json_text('raw_json', 'device_fingerprint') }} as device_fingerprint,
        {{ json_text('raw_json', 'ip_fingerprint') }} as ip_fingerprint,
        {{ json_text('raw_json', 'page') }} as page,
        {{ json_text('raw_json', 'query') }} as search_query,
        {{ json_text('raw_json', 'product_id') }} as product_id,
        {{ json_integer('raw_json', 'quantity') }} as quantity,
        {{ json_double('raw_json', 'price') }} as price,
        {{ json_text('raw_json', 'reason') }} as failed_login_reason,
        {{ json_text('raw_json', 'new_country') }} as new_country,
        {{ json_text('raw_json', 'payment_method') }} as payment_method,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
