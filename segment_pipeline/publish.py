"""Publish the analyst copy of the warehouse: a complete, atomically replaced copy of the DuckDB file.

Analysts never open the live warehouse: DuckDB allows one process per file, and even a read-only connection
blocks the pipeline's writer. Instead, after the models build, the whole warehouse is copied into a temporary
file next to the analyst copy with `COPY FROM DATABASE`, and that file is renamed over the copy. The rename is
atomic on one filesystem, so a reader sees either the old copy or the new one, never a half-written file, and
an analyst who has the old copy open keeps reading it undisturbed (POSIX keeps the old inode alive).

No Dagster imports: the Dagster asset and scripts call `publish_analytics_copy` directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

import duckdb

from .config import DEFAULT_DUCKDB_MEMORY_LIMIT, DUCKDB_WRITE_SETTINGS
from .warehouse import WarehouseLockedError, is_lock_error, lock_holder

__all__ = [
    "AnalyticsCopyBusyError",
    "PublishError",
    "WarehouseLockedError",
    "WarehouseNotFoundError",
    "publish_analytics_copy",
]


class PublishError(RuntimeError):
    """The analyst copy could not be published; the previous copy, if any, is untouched."""


class WarehouseNotFoundError(PublishError, FileNotFoundError):
    """The warehouse file does not exist (nothing has been loaded yet, or WAREHOUSE_PATH is wrong)."""


class AnalyticsCopyBusyError(PublishError):
    """The analyst copy cannot be replaced (opened read-write by someone, or a platform that forbids it)."""


def _sql_string(value: str | os.PathLike[str]) -> str:
    """A single-quoted SQL string literal (ATTACH takes no bound parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def _remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    # makes the rename itself durable; not possible (or needed) on every platform
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _settle_stale_wal(target: Path) -> None:
    """Fold a leftover `<copy>.wal` into the old copy before replacing it.

    A WAL only exists if someone opened the analyst copy read-write. Left next to the new file it would be
    replayed into it on the next open, so it is checkpointed into the old file (which is about to be replaced)
    here. If that someone still has the copy open, nothing can be done safely: say so.
    """
    wal = target.with_name(target.name + ".wal")
    if not wal.exists():
        return
    try:
        with duckdb.connect(str(target)) as connection:
            connection.execute("checkpoint")
    except duckdb.Error as exc:
        if is_lock_error(exc):
            raise AnalyticsCopyBusyError(
                f"the analyst copy {target} is open read-write in {lock_holder(exc)}, so it cannot be replaced "
                "safely. Close that session (analysts should open it with `duckdb -readonly` or "
                "`duckdb.connect(path, read_only=True)`) and publish again; the warehouse was not changed."
            ) from exc
        raise
    _remove_quietly(wal)


def _unqualify_views(connection: duckdb.DuckDBPyConnection, source_catalog: str) -> None:
    """Make the copied views name their tables without the warehouse's catalog.

    dbt writes views as `select ... from warehouse.schema.table` (the catalog is the warehouse file's name).
    DuckDB 1.5 copies that text as it is, so in the analyst copy, whose catalog is its own file's name, every
    such view would fail with `Catalog "warehouse" does not exist`. Without the catalog, a view reads the
    tables of whatever file holds it.
    """
    catalog = re.compile(rf'(?<![\w".])(?:"{re.escape(source_catalog)}"|{re.escape(source_catalog)})\.', re.IGNORECASE)
    views = connection.execute(
        "select schema_name, view_name, sql from duckdb_views() where database_name = 'publish_dst' and not internal"
    ).fetchall()
    if not views:
        return
    connection.execute("use publish_dst")
    # a view that reads another view binds only once that one is rewritten: repeat until all are done
    pending = [catalog.sub("", sql).replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1) for _, _, sql in views]
    while pending:
        failed = []
        for statement in pending:
            try:
                connection.execute(statement)
            except duckdb.BinderException:
                failed.append(statement)
        if len(failed) == len(pending):
            connection.execute(failed[0])  # raises what is wrong with it
        pending = failed
    connection.execute("use memory")


def publish_analytics_copy(
    warehouse_path: str | os.PathLike[str],
    analytics_path: str | os.PathLike[str],
    *,
    storage_version: str | None = None,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> dict:
    """Copy the whole warehouse to the analyst copy, replacing it atomically.

    Args:
        warehouse_path: the live DuckDB warehouse (the file dlt and dbt write).
        analytics_path: the analyst copy to create or replace (e.g. data/analytics.duckdb).
        storage_version: optional DuckDB storage version of the copy, e.g. "v1.4.0" so analysts on
            DuckDB < 2.0 can open it. By default the copy uses the running DuckDB's format.
        memory_limit: DuckDB's memory limit for the copy (the pipeline's DUCKDB_MEMORY_LIMIT).

    Returns:
        Stats: ``path`` (str), ``tables_copied`` and ``views_copied`` (int), ``size_bytes`` (int),
        ``seconds`` (float), ``tables`` (list of "schema.table") and ``storage_version`` (str).

    Raises:
        WarehouseNotFoundError: the warehouse file does not exist.
        WarehouseLockedError: another process holds the warehouse (e.g. a dlt or dbt step still running,
            or someone's DuckDB session on the live file); the message names the process.
        AnalyticsCopyBusyError: the analyst copy is open read-write somewhere, or the OS refused the rename.
        PublishError: any other failure. In every case the temporary file is removed and the previous analyst
            copy is left as it was.
    """
    warehouse = Path(warehouse_path).expanduser().absolute()
    target = Path(analytics_path).expanduser().absolute()
    if not warehouse.is_file():
        raise WarehouseNotFoundError(
            f"the warehouse {warehouse} does not exist: load data first (run the Klaviyo assets) or point "
            "WAREHOUSE_PATH at the right file"
        )
    if target == warehouse or (target.exists() and os.path.samefile(target, warehouse)):
        raise PublishError(f"the analyst copy must be a different file from the warehouse ({warehouse})")
    target.parent.mkdir(parents=True, exist_ok=True)

    # a unique name next to the target: same filesystem (so the rename is atomic) and no clash between
    # two publishes; DuckDB must create the file itself, so the placeholder is removed again
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temp = Path(temp_name)
    temp.unlink()
    temp_wal = temp.with_name(temp.name + ".wal")

    started = time.monotonic()
    try:
        # an in-memory database attaches both files, so the warehouse is only ever opened read-only; within
        # the pipeline's memory limit (the copy of a large warehouse took 1 GB more without one)
        with duckdb.connect(config={"memory_limit": memory_limit, **DUCKDB_WRITE_SETTINGS}) as connection:
            try:
                connection.execute(f"attach {_sql_string(warehouse)} as publish_src (read_only)")
            except duckdb.Error as exc:
                if is_lock_error(exc):
                    raise WarehouseLockedError(
                        f"the warehouse {warehouse} is locked by {lock_holder(exc)}. Wait for the running "
                        "pipeline step to finish (DuckDB steps take turns on the warehouse lock) or close that "
                        "process's DuckDB session, then publish again. The analyst copy was not changed."
                    ) from exc
                raise
            options = f" (storage_version {_sql_string(storage_version)})" if storage_version else ""
            connection.execute(f"attach {_sql_string(temp)} as publish_dst{options}")
            connection.execute("copy from database publish_src to publish_dst")
            _unqualify_views(connection, warehouse.stem)
            tables = [
                f"{schema}.{name}"
                for schema, name in connection.execute(
                    "select schema_name, table_name from duckdb_tables() "
                    "where database_name = 'publish_dst' order by schema_name, table_name"
                ).fetchall()
            ]
            views = connection.execute(
                "select count(*) from duckdb_views() where database_name = 'publish_dst' and not internal"
            ).fetchone()[0]
            # everything into the main file, so no WAL has to travel with it
            connection.execute("checkpoint publish_dst")
            connection.execute("detach publish_dst")
            connection.execute("detach publish_src")
        if temp_wal.exists():
            raise PublishError(f"DuckDB left a WAL next to {temp} after detaching; refusing to publish a partial copy")
        _fsync_file(temp)
        _settle_stale_wal(target)
        try:
            os.replace(temp, target)
        except PermissionError as exc:
            # Windows refuses to replace a file someone has open
            raise AnalyticsCopyBusyError(
                f"could not replace {target}: {exc}. Close the sessions that have it open and publish again."
            ) from exc
        _fsync_directory(target.parent)
    except PublishError:
        _remove_quietly(temp, temp_wal)
        raise
    except duckdb.Error as exc:
        _remove_quietly(temp, temp_wal)
        raise PublishError(f"copying {warehouse} to {target} failed: {exc}") from exc
    except BaseException:
        _remove_quietly(temp, temp_wal)
        raise

    return {
        "path": str(target),
        "tables_copied": len(tables),
        "views_copied": int(views),
        "size_bytes": target.stat().st_size,
        "seconds": round(time.monotonic() - started, 3),
        "tables": tables,
        "storage_version": storage_version or f"duckdb {duckdb.__version__} default",
    }
