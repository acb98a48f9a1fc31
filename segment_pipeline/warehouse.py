"""Small reads of the DuckDB warehouse that the load steps need, and the dlt pipelines that write it.

DuckDB lets one process hold the file at a time, so every connection here is opened, used and closed at
once, and a lock held by someone else becomes an error that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import dlt

from .tables import RAW_DATASET, SEGMENT_DEFINITIONS_TABLE, SEGMENTS_TABLE

# dlt would otherwise try to send anonymous telemetry; this machine and many production hosts have no internet.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file."""


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def is_lock_error(error: Exception) -> bool:
    """Whether a DuckDB error says another process holds the file."""
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def lock_holder(error: Exception) -> str:
    """The program and PID DuckDB names as holding the lock, or "another process"."""
    match = _LOCK_HOLDER.search(str(error))
    return f"{match['program']} (PID {match['pid']})" if match else "another process"


@contextlib.contextmanager
def read_connection(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection; a lock held elsewhere becomes a WarehouseLockedError."""
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if is_lock_error(exc):
            raise WarehouseLockedError(
                f"the warehouse {path} is locked by {lock_holder(exc)}. Close that DuckDB session "
                "(analysts should open the analyst copy, ANALYTICS_PATH, instead) and run again; nothing was "
                "written."
            ) from exc
        raise
    try:
        yield connection
    finally:
        connection.close()


def _table_exists(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def stored_segments(path: Path, account_id: str) -> list[dict]:
    """Every segment row stored for the account (deleted ones included), as dicts."""
    if not path.exists():
        return []
    with read_connection(path) as connection:
        if not _table_exists(connection, RAW_DATASET, SEGMENTS_TABLE):
            return []
        frame = connection.execute(
            f"select * exclude (_dlt_load_id, _dlt_id) from {RAW_DATASET}.{SEGMENTS_TABLE} where account_id = ?",
            [account_id],
        ).df()
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for record in records:
        # DuckDB hands JSON back as text; dlt expects the parsed object for a json column
        if isinstance(record.get("definition"), str):
            record["definition"] = json.loads(record["definition"])
    return records


def live_segment_ids(path: Path, account_id: str) -> list[str]:
    """Ids of the account's stored segments that the API still returned on the last refresh, sorted."""
    if not path.exists():
        return []
    with read_connection(path) as connection:
        if not _table_exists(connection, RAW_DATASET, SEGMENTS_TABLE):
            return []
        rows = connection.execute(
            f"select id from {RAW_DATASET}.{SEGMENTS_TABLE} where account_id = ? and not coalesce(is_deleted, false) "
            "order by id",
            [account_id],
        ).fetchall()
    return [row[0] for row in rows]


def definition_version_count(path: Path, account_id: str) -> int:
    """How many definition versions are stored for the account."""
    with read_connection(path) as connection:
        if not _table_exists(connection, RAW_DATASET, SEGMENT_DEFINITIONS_TABLE):
            return 0
        return connection.execute(
            f"select count(*) from {RAW_DATASET}.{SEGMENT_DEFINITIONS_TABLE} where account_id = ?", [account_id]
        ).fetchone()[0]


def dlt_pipeline(pipeline_name: str, warehouse_path: Path, pipelines_dir: Path) -> dlt.Pipeline:
    """A dlt pipeline writing the RAW_DATASET schema of the warehouse; its working dir stays in the project."""
    import dlt  # here, not at the top: the publish step and the demo need this module but not dlt
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    from .config import duckdb_memory_limit

    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    credentials = DuckDbCredentials(str(warehouse_path), global_config={"memory_limit": duckdb_memory_limit()})
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        pipelines_dir=str(pipelines_dir),
        destination=dlt.destinations.duckdb(credentials),
        dataset_name=RAW_DATASET,
    )
