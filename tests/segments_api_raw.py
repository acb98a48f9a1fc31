"""The raw tables of the second platform (schema `segments_api`) written straight into a DuckDB file.

They have the shape the segments_api loader gives them (dlt's tables, with `_dlt_load_id` and `_dlt_id`), so
the dbt models can be tested before (and apart from) the loader. `count_snapshots` applies the loader's rules
to what the API showed at each fetch: a count is dated on the day of its `lastCountedAt` in the workspace's
timezone, a count not recalculated since the previous fetch is no new row, and of a day's recounts the latest
is kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

SCHEMA = "segments_api"

RAW_DDL = {
    "workspaces": "workspace_name varchar, timezone varchar, _loaded_at timestamptz",
    "segments": (
        "workspace_name varchar, segment_id varchar, name varchar, description varchar, created_at timestamptz, "
        "first_seen_at timestamptz, last_seen_at timestamptz, deleted_at timestamptz, _loaded_at timestamptz"
    ),
    "segment_definitions": (
        "workspace_name varchar, segment_id varchar, definition_hash varchar, match_type varchar, filters varchar, "
        "name varchar, description varchar, first_seen_at timestamptz, _loaded_at timestamptz"
    ),
    "segment_count_snapshots": (
        "workspace_name varchar, segment_id varchar, counted_date date, last_counted_at timestamptz, "
        "cached_count bigint, fetched_at timestamptz, _loaded_at timestamptz"
    ),
}


@dataclass(frozen=True)
class Observation:
    """What one fetch of the API showed of a segment's count."""

    workspace_name: str
    segment_id: str
    fetched_at: dt.datetime
    last_counted_at: dt.datetime
    cached_count: int


def definition_hash(match_type: str, filters: list[dict]) -> str:
    return hashlib.sha256(
        json.dumps({"matchType": match_type, "filters": filters}, sort_keys=True).encode()
    ).hexdigest()


def count_snapshots(observations: Iterable[Observation], timezones: dict[str, str]) -> pd.DataFrame:
    """The snapshot rows the loader keeps of these observations (see the module docstring)."""
    kept: dict[tuple[str, str, dt.date], Observation] = {}
    for seen in sorted(observations, key=lambda o: o.fetched_at):
        day = seen.last_counted_at.astimezone(ZoneInfo(timezones[seen.workspace_name])).date()
        key = (seen.workspace_name, seen.segment_id, day)
        held = kept.get(key)
        if held is None or seen.last_counted_at > held.last_counted_at:
            kept[key] = seen
    return pd.DataFrame(
        [
            {
                "workspace_name": workspace,
                "segment_id": segment,
                "counted_date": day,
                "last_counted_at": seen.last_counted_at,
                "cached_count": seen.cached_count,
                "fetched_at": seen.fetched_at,
                "_loaded_at": seen.fetched_at,
            }
            for (workspace, segment, day), seen in sorted(kept.items())
        ],
        columns=[c.split()[0] for c in RAW_DDL["segment_count_snapshots"].split(", ")],
    )


def write_tables(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Create the tables of schema segments_api that are not there yet and insert the frames' rows."""
    with duckdb.connect(str(path)) as connection:
        connection.execute("set timezone = 'UTC'")
        connection.execute(f"create schema if not exists {SCHEMA}")
        for name, columns in RAW_DDL.items():
            connection.execute(
                f"create table if not exists {SCHEMA}.{name} ({columns}, _dlt_load_id varchar, _dlt_id varchar)"
            )
            if name not in tables or tables[name].empty:
                continue
            frame = tables[name].copy()
            frame["_dlt_load_id"] = "1772000000.0"
            frame["_dlt_id"] = [f"{name}-{dt.datetime.now().timestamp()}-{i}" for i in range(len(frame))]
            names = [c.split()[0] for c in columns.split(", ")] + ["_dlt_load_id", "_dlt_id"]
            column_list = ", ".join(names)
            connection.register("frame", frame)
            connection.execute(f"insert into {SCHEMA}.{name} ({column_list}) select {column_list} from frame")
            connection.unregister("frame")
