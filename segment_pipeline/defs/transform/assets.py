"""dbt models as Dagster assets, downstream of every account's raw tables. dbt tests surface as asset checks.

The models are not partitioned. The daily mart finds by itself which days changed (it compares the raw
series with the numbers it holds), so a run never has to tell dbt which days it loaded, and no run-specific
`--vars` invalidate dbt's partial parsing. One materialization per model per build keeps the UI truthful: a
model is one table, rebuilt from what changed.

They are built by Dagster's declarative automation (`automation.SHARED_BUILD`): after the accounts' runs
load, once none of them is still running, one run builds them, then the analyst copy and the report follow.
A backfill that selects them builds them once, after the series it loads.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from ...config import StorageSettings
from ...tables import SEGMENT_SERIES_TABLE
from ..account_names import GROUP, SHARED_GROUP_PREFIX, asset_key
from ..automation import SHARED_BUILD
from ..ingest.assets import holder
from ..segments_api import PLATFORM as SEGMENTS_API
from ..segments_api import snapshot_key
from .dbt_library import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCli, dbt_assets
from .project import dbt_project


class DbtConfig(dg.Config):
    """Run options for the dbt models."""

    full_refresh: bool = False


class SegmentGrowthTranslator(DagsterDbtTranslator):
    """Groups models by dbt layer so the UI shows staging, intermediate and marts apart, makes each model that
    reads a raw table depend on every account's asset of that table (and every model on every account's
    series and every Segments API workspace's snapshot), and puts every model under the shared build's
    automation condition.

    dbt sees one raw table `klaviyo.<table>` holding every account's rows; Dagster has one asset of it per
    account (`klaviyo/<account>/<table>`). The Segments API's four tables (`segments_api.<table>`) are all
    written by each workspace's one asset `segments_api/<workspace>/snapshots`; without a workspace the
    models read them as empty (dbt's source_or_empty) and depend on nothing of that platform.
    """

    def __init__(self, account_names: Sequence[str], workspace_names: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._account_names = tuple(account_names)
        self._workspace_names = tuple(workspace_names)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if not unique_id.startswith("model."):
            return spec
        deps: dict[dg.AssetKey, dg.AssetDep] = {}
        for dep in spec.deps:
            path = dep.asset_key.path
            if len(path) == 2 and path[0] == GROUP:
                deps.update((asset_key(name, path[1]),) * 2 for name in self._account_names)
            elif len(path) == 2 and path[0] == SEGMENTS_API:
                deps.update((snapshot_key(name),) * 2 for name in self._workspace_names)
            else:
                deps[dep.asset_key] = dep
        # every model also follows every account's series, even a model that reads only segments: a backfill
        # then builds the models once, after the series it loads, never part of them in a segments run
        deps.update((asset_key(name, SEGMENT_SERIES_TABLE),) * 2 for name in self._account_names)
        deps.update((snapshot_key(name),) * 2 for name in self._workspace_names)
        return spec.replace_attributes(
            deps=[dep if isinstance(dep, dg.AssetDep) else dg.AssetDep(dep) for dep in deps.values()],
            automation_condition=SHARED_BUILD,
        )

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props.get("resource_type") == "model":
            fqn = dbt_resource_props.get("fqn") or []
            layer = fqn[1] if len(fqn) > 2 else "models"
            return f"{SHARED_GROUP_PREFIX}{layer}"
        return super().get_group_name(dbt_resource_props)


def dbt_build_args(config: DbtConfig, storage: StorageSettings) -> list[str]:
    """The `dbt build` arguments for a run: incremental by default, or a full refresh.

    profiles.yml reads the warehouse path and the memory limit from these `--vars` (their defaults there are
    for dbt run by hand). They are the same on every run of a deployment, so dbt's partial parsing (which
    starts over when the vars change) keeps working.
    """
    profile_vars = {"warehouse_path": str(storage.warehouse_path), "duckdb_memory_limit": storage.duckdb_memory_limit}
    target = []
    if storage.lake is not None:
        # the profile's `lake` target attaches the lake (an in-memory DuckDB, the lake as its database)
        profile_vars = {"duckdb_memory_limit": storage.duckdb_memory_limit, **storage.lake.dbt_vars()}
        target = ["--target", "lake"]
    args = ["build", *target, "--vars", json.dumps(profile_vars, sort_keys=True)]
    return [*args, "--full-refresh"] if config.full_refresh else args


def build_models(account_names: Sequence[str], workspace_names: Sequence[str] = ()) -> dg.AssetsDefinition:
    """The dbt models, downstream of every account's raw-table assets and every Segments API workspace's
    snapshot (one build serves them all)."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        dagster_dbt_translator=SegmentGrowthTranslator(
            account_names, workspace_names, settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
        ),
        required_resource_keys={"warehouse", "dbt"},
        # one build whatever range of the accounts' series is selected with the models
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def segment_growth_models(context: dg.AssetExecutionContext, config: DbtConfig):
        warehouse = context.resources.warehouse
        dbt: DbtCli = context.resources.dbt
        # dbt (a child process) uses the warehouse until it exits: hold its lock (the file's, or the lake's writer
        # lock) for the whole build
        with warehouse.lock(holder(context)):
            yield from dbt.cli(dbt_build_args(config, warehouse.storage), context=context, raise_on_error=True).stream()

    return segment_growth_models
