{#-
    Delete the rows of `target` whose key no longer exists in `source`: an incremental
    model that only rewrites changed keys would otherwise keep a row whose source row
    was removed. Used as a post_hook; a no-op after a full build.
-#}
{% macro delete_rows_missing_from_source(target, source, keys) -%}
    delete from {{ target }} as target_row
    where not exists (
        select 1
        from {{ source }} as source_row
        where
            {%- for key in keys %}
            source_row.{{ key }} = target_row.{{ key }}{{ " and" if not loop.last }}
            {%- endfor %}
    )
{%- endmacro %}
