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

checked as (

    select
        *,
        {{ review_reject_reason() }} as reject_reason
    from source

),

renamed as (

    select
        _dedupe_key as review_id,
        {{ json_text('raw_json', 'alert_id') }} as alert_id,
        event_id,
        user_id,
        {{ json_text('raw_json', 'verdict') }} as verdict,
        {{ json_text('raw_json', 'reviewer') }} as reviewer,
        {{ json_text('raw_json', 'note') }} as note,
        occurred_at as reviewed_at,
        _loaded_at
    from checked
    where reject_reason is null

)

select * from renamed
