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

parsed as (

    select
        *,
        {{ json_record('raw_json', behavior_fields()) }} as j
    from source

),

checked as (

    select
        *,
        {{ behavior_reject_reason() }} as reject_reason
    from parsed

),

renamed as (

    select
        event_id,
        event_type,
        user_id,
        source,
        occurred_at,
        cast(occurred_at as date) as activity_date,
        {{ json_text('j', 'country') }} as country,
        {{ json_text('j', 'device_fingerprint') }} as device_fingerprint,
        {{ json_text('j', 'ip_fingerprint') }} as ip_fingerprint,
        {{ json_text('j', 'page') }} as page,
        {{ json_text('j', 'query') }} as search_query,
        {{ json_text('j', 'product_id') }} as product_id,
        {{ json_integer('j', 'quantity') }} as quantity,
        {{ json_double('j', 'price') }} as price,
        {{ json_text('j', 'reason') }} as failed_login_reason,
        {{ json_text('j', 'new_country') }} as new_country,
        {{ json_text('j', 'payment_method') }} as payment_method,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
