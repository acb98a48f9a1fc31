"""Helpers for tests that run the real Dagster assets against the simulator into a temporary DuckDB file."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from segment_pipeline.defs.resources import KlaviyoResource, WarehouseResource

FAST = 60.0  # simulator time factor; the client paces to match
API_KEY = "pk_test_4d1b7e9a2c5f8e0b3a6d"


def resources(sim, tmp_path: Path, **extra) -> dict:
    """The code location's resources over `tmp_path` and the simulator; other settings from the environment now."""
    warehouse = WarehouseResource.from_env(
        warehouse_path=str(tmp_path / "warehouse.duckdb"),
        analytics_path=str(tmp_path / "analytics.duckdb"),
        state_dir=str(tmp_path / "state"),
        charts_dir=str(tmp_path / "charts"),
    )
    klaviyo = KlaviyoResource.from_env(warehouse, base_url=sim.base_url, report_rate_per_minute=2 * sim.config.speed)
    return {"klaviyo": klaviyo, "warehouse": warehouse, **extra}


def range_tags(first: dt.date, last: dt.date) -> dict:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def query(path: Path, sql: str, params=None):
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


def materialize(assets, sim, tmp_path, *, instance=None, raise_on_error=True, **kwargs):
    return dg.materialize(
        assets, resources=resources(sim, tmp_path), instance=instance, raise_on_error=raise_on_error, **kwargs
    )


SERIES_STATS = ("total_members", "members_added", "members_removed", "net_members_changed")


def series_truth(sim, first: dt.date, last: dt.date) -> dict:
    """The simulator's series of every segment from `first` to `last`, as {(segment_id, day): stats}."""
    return {
        (s.id, row["date"]): tuple(row[k] for k in SERIES_STATS)
        for s in sim.account.segments
        for row in sim.account.series(s.id, first, last)
    }


def stored_series(warehouse: Path) -> dict:
    """The raw series in the warehouse file, as {(segment_id, day): stats}."""
    rows = query(warehouse, f"select segment_id, date, {', '.join(SERIES_STATS)} from klaviyo.segment_series_daily")
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}
