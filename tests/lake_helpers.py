"""Helpers for the tests that write a real DuckLake (PostgreSQL catalog from `postgres_fixtures`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dlt
import pyarrow as pa

from segment_pipeline.lake import Lake

FIRST_DAY = dt.date(2026, 1, 1)
SERIES_KEY = ["account_id", "segment_id", "date"]


def series(account: str, days: range, segments: int, offset: int = 0) -> pa.Table:
    """Daily rows of `segments` segments on `days` (numbers of days after FIRST_DAY).

    total_members = day * 10 + segment + offset, so every value says which load wrote it.
    """
    rows = [(account, f"seg{s:03d}", d, d * 10 + s + offset) for d in days for s in range(segments)]
    return pa.table(
        {
            "account_id": [r[0] for r in rows],
            "segment_id": [r[1] for r in rows],
            "date": pa.array([FIRST_DAY + dt.timedelta(days=r[2]) for r in rows], pa.date32()),
            "total_members": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def series_resource(table: pa.Table, name: str = "segment_series_daily"):
    return dlt.resource(table, name=name, primary_key=SERIES_KEY, write_disposition="merge")


def lake_pipeline(lake: Lake, name: str, pipelines_dir: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(pipelines_dir),
        destination=lake.dlt_destination(name),
        dataset_name="klaviyo",
    )


def read(lake: Lake, sql: str, params=None) -> list[tuple]:
    connection = lake.connect(read_only=True)
    try:
        return connection.execute(sql, params or []).fetchall()
    finally:
        connection.close()
