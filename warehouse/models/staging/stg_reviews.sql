{{
    config(
        unique_key='review_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'reviews') }}
    where {{ loaded_since_last_run() }}

),

parsed as (

    select
        *,
        {{ json_record('raw_json', review_fields()) }} as j
    from source

),

checked as (

    select
        *,
        {{ review_reject_reason() }} as reject_reason
    from parsed

),

renamed as (

    select
        _dedupe_key as review_id,
        {{ json_text('j', 'alert_id') }} as alert_id,
        event_id,
        user_id,
        {{ json_text('j', 'verdict') }} as verdict,
        {{ json_text('j', 'reviewer') }} as reviewer,
        {{ json_text('j', 'note') }} as note,
        occurred_at as reviewed_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
