{#-
    The canonical events table (event_id, event_type, user_id, source, occurred_at,
    raw_json) of every valid purchase and behaviour event: the input the shared feature
    definitions (shopsentry.features) compute point-in-time features from.
-#}
{{
    config(
        materialized='view',
        tags=['ml'],
    )
}}

with

purchases as (

    select
        raw.event_id,
        raw.event_type,
        raw.user_id,
        raw.source,
        raw.occurred_at,
        {{ json_to_text('raw.raw_json') }} as raw_json
    from {{ source('raw', 'purchase_events') }} as raw
    inner join {{ ref('stg_purchases') }} as valid
        on valid.event_id = raw._dedupe_key

),

behavior as (

    select
        raw.event_id,
        raw.event_type,
        raw.user_id,
        raw.source,
        raw.occurred_at,
        {{ json_to_text('raw.raw_json') }} as raw_json
    from {{ source('raw', 'user_behavior') }} as raw
    inner join {{ ref('stg_behavior_events') }} as valid
        on valid.event_id = raw._dedupe_key

)

select * from purchases
union all
select * from behavior
