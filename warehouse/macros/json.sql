{#-
    Reading fields out of the raw JSON (DuckDB's JSON type, Snowflake's VARIANT), the
    only place the two engines' syntax differs, isolated with adapter dispatch.

    A staging model first turns raw_json into a "record" once per row:
        {{ json_record('raw_json', ['order_id', 'amount']) }} as j
    (DuckDB: one json_transform parse into a struct of text fields; Snowflake: the
    VARIANT itself), then reads typed fields from it: json_double('j', 'amount').
    Parsing once instead of once per field is what keeps a million-row build fast.
-#}

{% macro json_record(column, fields) -%}
    {{ return(adapter.dispatch('json_record', 'shopsentry')(column, fields)) }}
{%- endmacro %}

{% macro default__json_record(column, fields) -%}
    json_transform({{ column }}, '{
        {%- for f in fields %}"{{ f }}": "VARCHAR"{{ ", " if not loop.last }}{% endfor -%}
    }')
{%- endmacro %}

{% macro snowflake__json_record(column, fields) -%}
    {{ column }}
{%- endmacro %}


{#- One field of a record as text (numbers and booleans as their JSON text). -#}
{% macro json_text(record, field) -%}
    {{ return(adapter.dispatch('json_text', 'shopsentry')(record, field)) }}
{%- endmacro %}

{% macro default__json_text(record, field) -%}
    {{ record }}."{{ field }}"
{%- endmacro %}

{% macro snowflake__json_text(record, field) -%}
    {{ record }}:{{ field }}::varchar
{%- endmacro %}


{#- An ISO-8601 timestamp with offset, as UTC without a time zone (TIMESTAMP_NTZ). -#}
{% macro json_timestamp(record, field) -%}
    {{ return(adapter.dispatch('json_timestamp', 'shopsentry')(record, field)) }}
{%- endmacro %}

{% macro default__json_timestamp(record, field) -%}
    timezone('UTC', try_cast({{ json_text(record, field) }} as timestamptz))
{%- endmacro %}

{% macro snowflake__json_timestamp(record, field) -%}
    convert_timezone('UTC', try_to_timestamp_tz({{ json_text(record, field) }}))::timestamp_ntz
{%- endmacro %}


{#- A JSON number as double, null when missing or not a number. -#}
{% macro json_double(record, field) -%}
    {{ try_cast(json_text(record, field), 'double') }}
{%- endmacro %}

{% macro json_integer(record, field) -%}
    {{ try_cast(json_text(record, field), dbt.type_bigint()) }}
{%- endmacro %}

{#- A JSON boolean; anything other than true/false is null. -#}
{% macro json_boolean(record, field) -%}
    case lower({{ json_text(record, field) }}) when 'true' then true when 'false' then false end
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


{#- The whole JSON document as text (Snowflake: to_json of the VARIANT). -#}
{% macro json_to_text(column) -%}
    {{ return(adapter.dispatch('json_to_text', 'shopsentry')(column)) }}
{%- endmacro %}

{% macro default__json_to_text(column) -%}
    cast({{ column }} as {{ dbt.type_string() }})
{%- endmacro %}

{% macro snowflake__json_to_text(column) -%}
    to_json({{ column }})
{%- endmacro %}
