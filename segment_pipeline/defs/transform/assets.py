"""dbt models as Dagster assets, downstream of the Klaviyo assets. dbt tests surface as asset checks.

The models are not partitioned. The daily mart finds by itself which days changed (it compares the raw
series with the numbers it holds), so a run never has to tell dbt which days it loaded, and no run-specific
`--vars` invalidate dbt's partial parsing. One materialization per model per run, instead of one per model
per day of a backfill, keeps the UI truthful (a model is one table, rebuilt as a whole from what changed)
and the run fast. They carry a single-run backfill policy so that `--partition-range` runs and UI backfills
of everything still build them once, after the series.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ...config import DEFAULT_ACCOUNT_NAME, PipelineSettings
from ..account_names import GROUP, asset_key
from ..resources import WarehouseResource
from . import built_from
from .project import dbt_project


class DbtConfig(dg.Config):
    """Run options for the dbt models."""

    full_refresh: bool = False


class SegmentGrowthTranslator(DagsterDbtTranslator):
    """Groups models by dbt layer so the UI shows staging, intermediate and marts apart, and makes each model
    that reads a raw table depend on every account's asset of that table.

    dbt sees one raw table `klaviyo.<table>` holding every account's rows; Dagster has one asset of it per
    account (`klaviyo/<account>/<table>`). The single account's asset is the source's own key.
    """

    def __init__(self, account_names: Sequence[str] = (DEFAULT_ACCOUNT_NAME,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._account_names = tuple(account_names)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if self._account_names == (DEFAULT_ACCOUNT_NAME,) or not unique_id.startswith("model."):
            return spec
        deps: list[dg.AssetDep] = []
        for dep in spec.deps:
            path = dep.asset_key.path
            if len(path) == 2 and path[0] == GROUP:
                deps.extend(dg.AssetDep(asset_key(name, path[1])) for name in self._account_names)
            else:
                deps.append(dep)
        return spec.replace_attributes(deps=deps)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props.get("resource_type") == "model":
            fqn = dbt_resource_props.get("fqn") or []
            layer = fqn[1] if len(fqn) > 2 else "models"
            return f"dbt_{layer}"
        return super().get_group_name(dbt_resource_props)


def dbt_build_args(config: DbtConfig, settings: PipelineSettings) -> list[str]:
    """The `dbt build` arguments for a run: incremental by default, or a full refresh.

    profiles.yml reads the warehouse path and the memory limit from these `--vars` (their defaults there are
    for dbt run by hand). They are the warehouse resource's, the same on every run of a deployment, so dbt's
    partial parsing (which starts over when the vars change) keeps working.
    """
    profile_vars = {"warehouse_path": str(settings.warehouse_path), "duckdb_memory_limit": settings.duckdb_memory_limit}
    args = ["build", "--vars", json.dumps(profile_vars, sort_keys=True)]
    return [*args, "--full-refresh"] if config.full_refresh else args


def build_dbt_assets(account_names: Sequence[str] = (DEFAULT_ACCOUNT_NAME,)) -> dg.AssetsDefinition:
    """The dbt models, downstream of every account's raw-table assets (one build serves every account)."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        # unpartitioned, but allowed into a single-run range (a backfill of everything, the daily job)
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=SegmentGrowthTranslator(
            account_names, settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
        ),
    )
    def segment_growth_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, config: DbtConfig
    ):
        settings = warehouse.settings
        # (a subset run's assets_def is the subset: compare with every model of the definition)
        every_model = set(context.selected_asset_keys) == every_key
        # dbt (a child process) uses the file until it exits: hold the warehouse lock for the whole build
        with warehouse.lock(context):
            inputs = built_from.current_inputs(settings.warehouse_path, dbt_project.manifest_path)
            record = built_from.last_built_from(settings.state_dir)
            if built_from.may_skip(
                settings.state_dir, inputs, every_model=every_model, full_refresh=config.full_refresh
            ):
                # another account's run built and published after every load of this one: all is current
                context.log.info(
                    "the marts, the analyst copy and the chart are already made from every load in the warehouse "
                    "(built by run %s, with this manifest); nothing to rebuild, so they are skipped in this run",
                    record.get("run_id"),
                )
                return
            yield from dbt.cli(dbt_build_args(config, settings), context=context, raise_on_error=True).stream()
            if every_model and inputs is not None:
                built_from.record_built_from(settings.state_dir, inputs, context.run_id)

    every_key = set(segment_growth_models.keys)
    return segment_growth_models


# the single account's (a deployment without an accounts file); the model keys are the same for any accounts
segment_growth_models = build_dbt_assets()
