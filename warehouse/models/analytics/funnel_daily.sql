{#-
    The behaviour funnel per day: users who viewed a page, then added to cart, then
    bought, counted per user and day (a user reaches a stage only through the previous
    ones). Built from behaviour events and purchases.
-#}
{{
    config(
        unique_key='activity_date',
    )
}}

with

{% if is_incremental() %}
changed_dates as (

    select activity_date from {{ ref('stg_behavior_events') }}
    where {{ loaded_since_last_run() }}
    union
    select purchase_date as activity_date from {{ ref('stg_purchases') }}
    where {{ loaded_since_last_run() }}

),
{% endif %}

steps as (

    select
        activity_date,
        user_id,
        event_type as step,
        _loaded_at
    from {{ ref('stg_behavior_events') }}
    where event_type in ('page_view', 'search', 'add_to_cart')
    {% if is_incremental() %}
        and activity_date in (select activity_date from changed_dates)
    {% endif %}

    union all

    select
        purchase_date as activity_date,
        user_id,
        'purchase' as step,
        _loaded_at
    from {{ ref('stg_purchases') }}
    {% if is_incremental() %}
    where purchase_date in (select activity_date from changed_dates)
    {% endif %}

),

per_user as (

    select
        activity_date,
        user_id,
        max(case when step = 'page_view' then 1 else 0 end) as viewed,
        max(case when step = 'search' then 1 else 0 end) as searched,
        max(case when step = 'add_to_cart' then 1 else 0 end) as added_to_cart,
        max(case when step = 'purchase' then 1 else 0 end) as purchased,
        max(_loaded_at) as _loaded_at
    from steps
    group by activity_date, user_id

),

daily as (

    select
        activity_date,
        count(*) as active_users,
        sum(viewed) as viewers,
        sum(viewed * searched) as searchers,
        sum(viewed * added_to_cart) as cart_users,
        sum(viewed * added_to_cart * purchased) as buyers,
        sum(purchased) as all_buyers,
        max(_loaded_at) as _loaded_at
    from per_user
    group by activity_date

)

select
    activity_date,
    active_users,
    viewers,
    searchers,
    cart_users,
    buyers,
    all_buyers,
    {{ safe_divide('cart_users', 'viewers') }} as view_to_cart_rate,
    {{ safe_divide('buyers', 'cart_users') }} as cart_to_purchase_rate,
    {{ safe_divide('buyers', 'viewers') }} as view_to_purchase_rate,
    _loaded_at
from daily
