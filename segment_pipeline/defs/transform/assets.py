"""dbt models as Dagster assets, downstream of the Klaviyo assets and sharing the series' daily partitions.

A partitioned run passes its days to dbt as `min_date`/`max_date`; the incremental daily mart rebuilds just
those days (reading 30 days before them for the rolling windows). dbt tests surface as asset checks.
"""

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ..partitions import daily_partitions
from ..resources import WarehouseResource
from .project import dbt_project


class DbtConfig(dg.Config):
    """Run options for the dbt models."""

    full_refresh: bool = False


class SegmentGrowthTranslator(DagsterDbtTranslator):
    """Groups models by dbt layer so the UI shows staging, intermediate and marts apart."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props.get("resource_type") == "model":
            fqn = dbt_resource_props.get("fqn") or []
            layer = fqn[1] if len(fqn) > 2 else "models"
            return f"dbt_{layer}"
        return super().get_group_name(dbt_resource_props)


def dbt_build_args(config: DbtConfig, window: dg.TimeWindow | None) -> list[str]:
    """The `dbt build` arguments for a run: the partition window as vars, or a full refresh."""
    args = ["build"]
    if config.full_refresh:
        return [*args, "--full-refresh"]
    if window is not None:
        variables = {
            "min_date": window.start.date().isoformat(),
            "max_date": window.end.date().isoformat(),  # exclusive, like the partition window
        }
        args += ["--vars", json.dumps(variables)]
    return args


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=SegmentGrowthTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
)
def segment_growth_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, config: DbtConfig
):
    # dbt reads WAREHOUSE_PATH through profiles.yml; hand it the same absolute path dlt wrote to
    settings = warehouse.settings()
    # a single partition (the daily schedule) and a range (a backfill) both pass their days to dbt
    partitioned = context.has_partition_key or context.has_partition_key_range
    window = context.partition_time_window if partitioned else None
    # the lookback days re-pulled by the series asset changed too: rebuild them along with the window
    if window is not None and settings.lookback_days:
        window = dg.TimeWindow(window.start - dt.timedelta(days=settings.lookback_days), window.end)
    # dbt (a child process) uses the file until it exits: hold the warehouse lock for the whole build
    with warehouse.lock(context):
        with warehouse_env(settings.warehouse_path):
            # the dbt subprocess copies the environment when it starts, inside this block
            invocation = dbt.cli(dbt_build_args(config, window), context=context, raise_on_error=True)
        yield from invocation.stream()


@contextlib.contextmanager
def warehouse_env(path: Path) -> Iterator[None]:
    """Point profiles.yml's env_var('WAREHOUSE_PATH') at `path` while dbt starts, then restore the old value."""
    previous = os.environ.get("WAREHOUSE_PATH")
    os.environ["WAREHOUSE_PATH"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("WAREHOUSE_PATH", None)
        else:
            os.environ["WAREHOUSE_PATH"] = previous
