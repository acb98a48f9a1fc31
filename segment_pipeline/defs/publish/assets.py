"""Assets that hand the results to people: the analyst copy of the warehouse and the growth chart.

Analysts read a copy, never the live file: even a read-only DuckDB connection blocks the pipeline's writer.
The copy is replaced atomically, so an analyst with it open keeps reading the previous version.
"""

import base64

import dagster as dg

from ..resources import WarehouseResource
from ..transform import built_from
from ..transform.assets import segment_growth_models
from ..transform.project import dbt_project

ANALYTICS_COPY_KEY = dg.AssetKey(["analytics", "warehouse_copy"])
GROWTH_CHART_KEY = dg.AssetKey(["analytics", "growth_chart"])


@dg.asset(
    key=ANALYTICS_COPY_KEY,
    group_name="analytics",
    deps=list(segment_growth_models.keys),
    kinds={"duckdb"},
    # unpartitioned like the models it follows (the copy is always whole); the single-run policy lets a
    # backfill of everything (UI or `--partition-range`) publish once, after the models, in the same run
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "A copy of the whole warehouse for SQL analysts at ANALYTICS_PATH, published atomically after the "
        "models build: open it read-only at any time without ever blocking a pipeline run."
    ),
)
def analytics_copy(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from ...publish import publish_analytics_copy  # imported when a run needs it: loading the code stays fast

    settings = warehouse.settings
    with warehouse.lock(context):
        inputs = built_from.current_inputs(settings.warehouse_path, dbt_project.manifest_path)
        stats = publish_analytics_copy(
            settings.warehouse_path, settings.analytics_path, memory_limit=settings.duckdb_memory_limit
        )
    if inputs is not None:
        built_from.record_built_from(settings.state_dir, inputs, context.run_id, step="analytics_copy")
    context.log.info("published the analyst copy at %s", settings.analytics_path)
    return dg.MaterializeResult(metadata={k: v for k, v in stats.items() if isinstance(v, (int, float, str))})


@dg.asset(
    key=GROWTH_CHART_KEY,
    group_name="analytics",
    deps=[ANALYTICS_COPY_KEY],
    kinds={"html"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "The growth report (CHARTS_DIR/segment_growth.html: every segment, interactive, works offline) and a "
        "PNG of the largest segments for mail and chat. Reads the analyst copy, so it never touches the live file."
    ),
)
def growth_chart(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    # pandas and matplotlib cost a second to import: only runs that draw the chart pay for them
    from ...charts import write_growth_charts

    settings = warehouse.settings
    # the copy this chart reads was published from these inputs
    copied_from = built_from.inputs_only(built_from.last_built_from(settings.state_dir, "analytics_copy"))
    paths = write_growth_charts(settings.analytics_path, settings.charts_dir, memory_limit=settings.duckdb_memory_limit)
    if copied_from is not None:
        built_from.record_built_from(settings.state_dir, copied_from, context.run_id, step="growth_chart")
    context.log.info("growth report written to %s", paths["html"])
    # the UI shows Markdown metadata inline: a small preview as a data URI, so the chart is seen, not just named
    preview = base64.b64encode(paths["preview"].read_bytes()).decode("ascii")
    return dg.MaterializeResult(
        metadata={
            "chart": dg.MetadataValue.md(f"![The largest segments' growth](data:image/png;base64,{preview})"),
            "report": dg.MetadataValue.path(str(paths["html"])),
            "png": dg.MetadataValue.path(str(paths["png"])),
            "html": dg.MetadataValue.path(str(paths["html"])),
        }
    )
