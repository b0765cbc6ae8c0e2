{#-
    Incremental builds by "what changed": every model carries _loaded_at, the latest
    load time of the RAW rows it was built from. A run rebuilds only the keys (events,
    days, hours) touched by rows loaded after the model's own high-water mark, so a late
    label, a backfill of a past day or a rerun of the same hour all land correctly, and
    an unchanged warehouse rebuilds nothing.
-#}

{#- The model's high-water mark: the newest _loaded_at it already contains. -#}
{% macro high_water_mark() -%}
    (select coalesce(max(_loaded_at), cast('{{ var("epoch") }}' as timestamp)) from {{ this }})
{%- endmacro %}

{#- A filter on rows loaded since this model last ran (true on a full build). -#}
{% macro loaded_since_last_run(column='_loaded_at') -%}
    {%- if is_incremental() -%}
        {{ column }} > {{ high_water_mark() }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#-
    A filter keeping the rows of `relation` whose `key` was touched since this model last
    ran: `key in (keys of rows with _loaded_at past the high-water mark)`.
-#}
{% macro key_changed_since_last_run(key, relation, relation_key=none) -%}
    {%- if is_incremental() -%}
        {{ key }} in (
            select distinct {{ relation_key or key }}
            from {{ relation }}
            where _loaded_at > {{ high_water_mark() }}
        )
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}
