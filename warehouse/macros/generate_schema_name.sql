{#-
    Use each folder's schema name as is (raw, staging, analytics, ml_features), as the
    design's Snowflake schemas are named, instead of dbt's "<target>_<custom>" default.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
