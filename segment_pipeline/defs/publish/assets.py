"""Assets that hand the results to people: the analyst copy of the warehouse and the growth report.

Analysts read a copy, never the live file: even a read-only DuckDB connection blocks the pipeline's writer.
The copy is replaced atomically, so an analyst with it open keeps reading the previous version. Both follow
the models by the shared build's automation condition.

A DuckLake warehouse has no analyst copy: analysts attach the lake read-only and query it while the pipeline
writes (docs/deploying.md), so the copy is left out of the definitions and the report reads the lake.
"""

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


class ReportFailedError(RuntimeError):
    """The report's process stopped on an error it reported (its message says what to do)."""


def _reported_by_the_process(context: dg.AssetExecutionContext) -> str | None:
    """The error the report's process reported through Pipes (an engine event of the run; no other step of a run
    starts one), if any: Dagster's own step failure says only that the process exited with code 1."""
    for entry in reversed(context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        event = entry.dagster_event
        error = event.engine_event_data.error if event and event.engine_event_data else None
        if error is not None and entry.user_message.startswith("[pipes]"):
            return error.message.strip()
    return None


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
        import sys

        storage = context.resources.warehouse.storage
        lake = storage.lake
        source = [str(storage.analytics_path)]
        if lake is not None:
            source = [
                lake.catalog.url(),
                "--data-path",
                str(lake.data_path),
                "--extension-dir",
                str(lake.extension_dir),
            ]
        command = [sys.executable, "-m", "segment_pipeline.report_process", *source]
        command += [str(storage.charts_dir), "--memory-limit", storage.duckdb_memory_limit]
        # a process of its own: the report's data (every segment's series) never adds to this process's memory,
        # which has just built the models and the copy; it reports its metadata back through Dagster Pipes
        try:
            return dg.PipesSubprocessClient().run(command=command, context=context).get_materialize_result()
        except Exception as exc:
            reason = _reported_by_the_process(context)
            if reason is None:
                raise
            raise ReportFailedError(f"the growth report was not written: {reason}") from exc

    return growth_chart
