"""Assets that hand the results to people: the analyst copy of the warehouse and the growth report.

Analysts read a copy, never the live file: even a read-only DuckDB connection blocks the pipeline's writer.
The copy is replaced atomically, so an analyst with it open keeps reading the previous version. Both follow
the models by the shared build's automation condition.

A DuckLake warehouse has no analyst copy: analysts attach the lake read-only and query it while the pipeline
writes (docs/deploying.md), so the copy is left out of the definitions and the report reads the lake.
"""

import base64
from collections.abc import Iterable

import dagster as dg

from ..account_names import PUBLISHING_GROUP
from ..automation import SHARED_BUILD
from ..ingest.assets import holder

ANALYTICS_COPY_KEY = dg.AssetKey(["analytics", "warehouse_copy"])
GROWTH_CHART_KEY = dg.AssetKey(["analytics", "growth_chart"])


def build_publishing(model_keys: Iterable[dg.AssetKey], lake: bool = False) -> list[dg.AssetsDefinition]:
    """The analyst copy (after every model) and the growth report (after the copy); on a lake, the report alone,
    after every model."""
    model_keys = list(model_keys)
    if lake:
        return [build_growth_chart(model_keys)]
    return [build_analytics_copy(model_keys), build_growth_chart([ANALYTICS_COPY_KEY])]


def build_analytics_copy(model_keys: Iterable[dg.AssetKey]) -> dg.AssetsDefinition:
    """The copy of the warehouse analysts open, published after every model."""

    @dg.asset(
        key=ANALYTICS_COPY_KEY,
        group_name=PUBLISHING_GROUP,
        deps=list(model_keys),
        kinds={"duckdb"},
        automation_condition=SHARED_BUILD,
        # one run whatever range of the partitioned assets upstream is selected with it
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={"warehouse"},
        description=(
            "A copy of the whole warehouse for SQL analysts at ANALYTICS_PATH, published atomically after the "
            "models build: open it read-only at any time without ever blocking a pipeline run."
        ),
    )
    def analytics_copy(context: dg.AssetExecutionContext):
        from ...publish import publish_analytics_copy  # imported when a run needs it: loading the code stays fast

        warehouse = context.resources.warehouse
        storage = warehouse.storage
        with warehouse.lock(holder(context)):
            stats = publish_analytics_copy(
                storage.warehouse_path, storage.analytics_path, memory_limit=storage.duckdb_memory_limit
            )
        context.log.info("published the analyst copy at %s", storage.analytics_path)
        return dg.MaterializeResult(metadata={k: v for k, v in stats.items() if isinstance(v, (int, float, str))})

    return analytics_copy


def build_growth_chart(deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The growth report and its PNG, drawn from the analyst copy (or the lake) once `deps` are built."""

    @dg.asset(
        key=GROWTH_CHART_KEY,
        group_name=PUBLISHING_GROUP,
        deps=deps,
        kinds={"html"},
        automation_condition=SHARED_BUILD,
        # one run whatever range of the partitioned assets upstream is selected with it
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={"warehouse"},
        description=(
            "The growth report (CHARTS_DIR/segment_growth.html: every segment, interactive, works offline) and a "
            "PNG of the largest segments for mail and chat. Reads the analyst copy, so it never touches the live "
            "file (a DuckLake warehouse: reads the lake)."
        ),
    )
    def growth_chart(context: dg.AssetExecutionContext):
        # pandas and matplotlib cost a second to import: only runs that draw the chart pay for them
        from ...charts import write_growth_charts

        storage = context.resources.warehouse.storage
        paths = write_growth_charts(
            storage.lake or storage.analytics_path, storage.charts_dir, memory_limit=storage.duckdb_memory_limit
        )
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

    return growth_chart
