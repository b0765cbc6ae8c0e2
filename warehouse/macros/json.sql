{#-
    Reading fields out of the raw JSON (DuckDB's JSON type, Snowflake's VARIANT).
    The only place the two engines' syntax differs, isolated with adapter dispatch.
-#}

{% macro json_text(column, field) -%}
    {{ return(adapter.dispatch('json_text', 'shopsentry')(column, field)) }}
{%- endmacro %}

{% macro default__json_text(column, field) -%}
    json_extract_string({{ column }}, '$.{{ field }}')
{%- endmacro %}

{% macro snowflake__json_text(column, field) -%}
    {{ column }}:{{ field }}::varchar
{%- endmacro %}


{#- An ISO-8601 timestamp with offset, as UTC without a time zone (TIMESTAMP_NTZ). -#}
{% macro json_timestamp(column, field) -%}
    {{ return(adapter.dispatch('json_timestamp', 'shopsentry')(column, field)) }}
{%- endmacro %}

{% macro default__json_timestamp(column, field) -%}
    timezone('UTC', try_cast({{ json_text(column, field) }} as timestamptz))
{%- endmacro %}

{% macro snowflake__json_timestamp(column, field) -%}
    convert_timezone('UTC', try_to_timestamp_tz({{ json_text(column, field) }}))::timestamp_ntz
{%- endmacro %}


{#- A JSON number as double, null when missing or not a number. -#}
{% macro json_double(column, field) -%}
    {{ try_cast(json_text(column, field), 'double') }}
{%- endmacro %}

{% macro json_integer(column, field) -%}
    {{ try_cast(json_text(column, field), dbt.type_bigint()) }}
{%- endmacro %}

{#- A JSON boolean; anything other than true/false is null. -#}
{% macro json_boolean(column, field) -%}
    case lower({{ json_text(column, field) }}) when 'true' then true when 'false' then false end
{%- endmacro %}


{#-
    try_cast on DuckDB and Snowflake (both have it for text input); dbt-duckdb's
    dbt.safe_cast is a plain cast, which would fail a build on one bad value.
-#}
{% macro try_cast(expression, type) -%}
    {{ return(adapter.dispatch('try_cast', 'shopsentry')(expression, type)) }}
{%- endmacro %}

{% macro default__try_cast(expression, type) -%}
    {{ dbt.safe_cast(expression, type) }}
{%- endmacro %}

{% macro duckdb__try_cast(expression, type) -%}
    try_cast({{ expression }} as {{ type }})
{%- endmacro %}

{% macro snowflake__try_cast(expression, type) -%}
    try_cast({{ expression }} as {{ type }})
{%- endmacro %}
