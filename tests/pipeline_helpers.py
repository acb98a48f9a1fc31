"""Helpers for tests that run the real Dagster definitions against the simulator into a temporary warehouse.

The definitions are built the way the code location builds them (`build_definitions(load_settings(env))`),
from an environment that points at the simulator and at `tmp_path`; tests then materialize what they need by
name, for an account (`default` unless said otherwise).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import dagster as dg
import duckdb

from segment_pipeline.defs.account_names import asset_key
from segment_pipeline.defs.deployment import build_definitions
from segment_pipeline.defs.publish.assets import ANALYTICS_COPY_KEY, GROWTH_CHART_KEY
from segment_pipeline.lake import Lake
from segment_pipeline.settings import Settings, load_settings
from segment_pipeline.tables import SEGMENT_SERIES_TABLE, SEGMENTS_TABLE

FAST = 60.0  # simulator time factor; the client paces to match
API_KEY = "pk_test_4d1b7e9a2c5f8e0b3a6d"

# what tests materialize, by name
SEGMENTS = "segments"
SERIES = "series"
MODELS = "models"
COPY = "copy"
CHART = "chart"


def pipeline_env(sim, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a deployment on the simulator with every file under `tmp_path`; `extra` wins."""
    env = dict(os.environ)
    env.update(
        KLAVIYO_API_KEY=sim.config.api_key if sim is not None else API_KEY,
        KLAVIYO_BASE_URL=sim.base_url if sim is not None else "http://127.0.0.1:9",
        KLAVIYO_TIMEZONE=sim.account.timezone if sim is not None else "US/Eastern",
        KLAVIYO_REPORT_RATE_PER_MINUTE=str(2 * (sim.config.speed if sim is not None else FAST)),
        WAREHOUSE_PATH=str(tmp_path / "warehouse.duckdb"),
        ANALYTICS_PATH=str(tmp_path / "analytics.duckdb"),
        PIPELINE_STATE_DIR=str(tmp_path / "state"),
        CHARTS_DIR=str(tmp_path / "charts"),
    )
    env.update(extra)
    return env


def settings(sim, tmp_path: Path, **extra: str) -> Settings:
    return load_settings(pipeline_env(sim, tmp_path, **extra))


def definitions(sim, tmp_path: Path, **extra: str) -> dg.Definitions:
    """The code location's definitions for a deployment on the simulator (see `pipeline_env`)."""
    return build_definitions(settings(sim, tmp_path, **extra))


def keys(names: Iterable[str], defs: dg.Definitions, account: str = "default") -> list[dg.AssetKey]:
    """The asset keys the test names stand for."""
    chosen: list[dg.AssetKey] = []
    every = {key for assets in defs.assets for key in assets.keys}
    for name in names:
        if name == SEGMENTS:
            chosen.append(asset_key(account, SEGMENTS_TABLE))
        elif name == SERIES:
            chosen.append(asset_key(account, SEGMENT_SERIES_TABLE))
        elif name == MODELS:
            chosen += sorted(key for key in every if key.path[0] in ("staging", "intermediate", "marts"))
        elif name == COPY:
            chosen.append(ANALYTICS_COPY_KEY)
        elif name == CHART:
            chosen.append(GROWTH_CHART_KEY)
        else:
            chosen.append(dg.AssetKey.from_user_string(name))
    return chosen


def materialize(
    names: Iterable[str],
    sim,
    tmp_path: Path,
    *,
    account: str = "default",
    env: Mapping[str, str] | None = None,
    checks: bool = False,
    defs: dg.Definitions | None = None,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    """Materialize the named assets of `account` in process (their checks only when `checks`)."""
    defs = defs or definitions(sim, tmp_path, **(env or {}))
    selection = dg.AssetSelection.assets(*keys(names, defs, account))
    if not checks:
        selection = selection.without_checks()
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])], selection=selection, resources=defs.resources, **kwargs
    )


def range_tags(first: dt.date, last: dt.date) -> dict:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def lake_env(lake: Lake) -> dict[str, str]:
    """The variables that make `lake` the deployment's warehouse (its password goes in PGPASSWORD)."""
    return {
        "WAREHOUSE_PATH": lake.catalog.url(),
        "WAREHOUSE_DATA_PATH": lake.data_path,
        "DUCKDB_EXTENSION_DIR": str(lake.extension_dir),
    }


def query(warehouse: Path | Lake, sql: str, params=None):
    """Rows of `sql` read from a DuckDB file, or from a lake (attached read-only, in use)."""
    if isinstance(warehouse, Lake):
        connection = warehouse.connect(read_only=True)
        try:
            return connection.execute(sql, params or []).fetchall()
        finally:
            connection.close()
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


SERIES_STATS = ("total_members", "members_added", "members_removed", "net_members_changed")


def series_truth(sim, first: dt.date, last: dt.date) -> dict:
    """The simulator's series of every segment from `first` to `last`, as {(segment_id, day): stats}."""
    return {
        (s.id, row["date"]): tuple(row[k] for k in SERIES_STATS)
        for s in sim.account.segments
        for row in sim.account.series(s.id, first, last)
    }


def stored_series(warehouse: Path | Lake) -> dict:
    """The raw series in the warehouse (a file or a lake), as {(segment_id, day): stats}."""
    rows = query(warehouse, f"select segment_id, date, {', '.join(SERIES_STATS)} from klaviyo.segment_series_daily")
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}
