{#-
    Each registered model's training reference (bins per feature and for its score),
    copied into RAW before every build by shopsentry.warehouse.model_reference.
-#}
{{
    config(
        materialized='table',
        unique_key='reference_bin_id',
    )
}}

with

source as (

    select * from {{ source('raw', 'model_reference') }}

),

renamed as (

    select
        {{ dbt.concat(["model_version", "':'", "kind", "':'", "feature", "':'", dbt.safe_cast("bin", dbt.type_string())]) }}
            as reference_bin_id,
        model_version,
        kind,
        feature,
        bin,
        lower_edge,
        upper_edge,
        expected_share,
        missing_share,
        importance,
        importance_rank,
        reference_rows,
        _loaded_at
    from source

)

select * from renamed
