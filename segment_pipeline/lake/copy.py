"""Moving over: copy a DuckDB file warehouse into a lake, every table and every row, once.

Every base table of every schema is copied with its columns, types and NOT NULL constraints: the raw tables
with all their history (every definition version, every day of the series), dlt's own tables (`_dlt_loads`,
`_dlt_version`, `_dlt_pipeline_state`, so a pipeline pointed at the lake carries on from the same state) and
the marts. Two kinds of objects are left out and named in the report: views (dbt creates them again on its
next build, and their SQL names the file's catalog) and dlt's staging datasets (`<dataset>_staging`, scratch
space that dlt empties before every load).

Each table is copied in one lake transaction together with a row in `main._file_warehouse_copies` that records
what was copied (row count and checksum of the source table). A second run finds those rows and copies
nothing again; a run stopped half-way copies only the tables it had not finished. Before copying anything the
command checks every table and refuses, with nothing copied, when the lake already holds a table that did not
come from this copy, or when a table of the file changed after it was copied (both would mix two histories).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ..config import DEFAULT_LOCK_TIMEOUT_SECONDS
from ..warehouse import is_lock_error, lock_holder
from .errors import retry_commit_conflicts
from .location import Lake, sql_string
from .writer_lock import lake_writer_lock

COPIES_TABLE = "_file_warehouse_copies"
_SOURCE = "file_warehouse"
DLT_STAGING_SUFFIX = "_staging"


class CopyRefusedError(RuntimeError):
    """The copy would mix the file's history with the lake's; nothing was copied."""


@dataclass(frozen=True)
class TableCopy:
    schema: str
    table: str
    rows: int
    copied: bool  # False: it had been copied by an earlier run


@dataclass
class CopyReport:
    """What a copy did: each table with its rows, and what was left out and why."""

    source: Path
    lake: str
    tables: list[TableCopy] = field(default_factory=list)
    views: list[str] = field(default_factory=list)  # schema.name of each view, left out
    dlt_staging: list[str] = field(default_factory=list)  # schema.name of each dlt staging table, left out

    @property
    def rows_copied(self) -> int:
        return sum(table.rows for table in self.tables if table.copied)

    @property
    def tables_copied(self) -> int:
        return sum(1 for table in self.tables if table.copied)

    def lines(self) -> list[str]:
        """The report as a person reads it: a line per table, what was left out, then the totals."""
        width = max((len(f"{t.schema}.{t.table}") for t in self.tables), default=0)
        lines = [f"Copy of {self.source} into {self.lake}:"]
        for table in self.tables:
            what = "copied" if table.copied else "already copied by an earlier run"
            rows = f"{table.rows:,} row{'' if table.rows == 1 else 's'}"
            lines.append(f"  {f'{table.schema}.{table.table}':<{width}}  {rows:>16}  {what}")
        if self.views:
            lines.append(f"Not copied: {len(self.views)} view(s), which dbt creates again on its next build.")
        if self.dlt_staging:
            lines.append(
                f"Not copied: {len(self.dlt_staging)} table(s) of dlt's staging datasets, emptied before every load."
            )
        already = len(self.tables) - self.tables_copied
        lines.append(
            f"{self.tables_copied} table(s) and {self.rows_copied:,} row(s) copied"
            + (f"; {already} table(s) had been copied before and were left as they are." if already else ".")
        )
        return lines


@dataclass(frozen=True)
class _SourceTable:
    schema: str
    table: str
    columns: tuple[tuple[str, str, bool], ...]  # (name, type, nullable)
    rows: int
    checksum: int


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _attach_source(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"there is no file warehouse at {path}")
    try:
        connection.execute(f"ATTACH {sql_string(str(path))} AS {_SOURCE} (READ_ONLY)")
    except duckdb.Error as exc:
        if is_lock_error(exc):
            raise CopyRefusedError(
                f"the file warehouse {path} is in use by {lock_holder(exc)}. Stop the pipeline's runs (and close "
                "any DuckDB session on the file), then run the copy again; nothing was copied."
            ) from exc
        raise


def _source_tables(connection: duckdb.DuckDBPyConnection, report: CopyReport) -> list[_SourceTable]:
    objects = connection.execute(
        "select schema_name, table_name, 'table' from duckdb_tables() where database_name = ? "
        "union all select schema_name, view_name, 'view' from duckdb_views() "
        "where database_name = ? and not internal order by 1, 2",
        [_SOURCE, _SOURCE],
    ).fetchall()
    schemas = {schema for schema, _, _ in objects}
    tables: list[_SourceTable] = []
    for schema, name, kind in objects:
        if kind == "view":
            report.views.append(f"{schema}.{name}")
            continue
        if schema.endswith(DLT_STAGING_SUFFIX) and schema[: -len(DLT_STAGING_SUFFIX)] in schemas:
            report.dlt_staging.append(f"{schema}.{name}")
            continue
        columns = tuple(
            connection.execute(
                "select column_name, data_type, is_nullable from duckdb_columns() "
                "where database_name = ? and schema_name = ? and table_name = ? order by column_index",
                [_SOURCE, schema, name],
            ).fetchall()
        )
        rows, checksum = connection.execute(
            f"select count(*), coalesce(sum(hash(t)), 0) from {_SOURCE}.{_quote(schema)}.{_quote(name)} t"
        ).fetchone()
        tables.append(_SourceTable(schema, name, columns, int(rows), int(checksum)))
    return tables


def _lake_tables(connection: duckdb.DuckDBPyConnection, lake: Lake) -> set[tuple[str, str]]:
    return {
        (schema, name)
        for schema, name in connection.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = ?", [lake.alias]
        ).fetchall()
    }


def _earlier_copies(connection: duckdb.DuckDBPyConnection, lake: Lake) -> dict[tuple[str, str], tuple[int, int]]:
    connection.execute(
        f"create table if not exists {lake.alias}.main.{COPIES_TABLE} (schema_name varchar not null, "
        "table_name varchar not null, source_path varchar not null, source_rows bigint not null, "
        "source_checksum hugeint not null, copied_at timestamp with time zone not null)"
    )
    return {
        (schema, name): (int(rows), int(checksum))
        for schema, name, rows, checksum in connection.execute(
            f"select schema_name, table_name, source_rows, source_checksum from {lake.alias}.main.{COPIES_TABLE}"
        ).fetchall()
    }


def _check(tables: list[_SourceTable], existing: set[tuple[str, str]], earlier: dict) -> None:
    """Refuse (nothing copied yet) when a lake table did not come from this copy, or its source changed since."""
    foreign, changed = [], []
    for table in tables:
        key = (table.schema, table.table)
        if key in earlier:
            if earlier[key] != (table.rows, table.checksum):
                changed.append(f"{table.schema}.{table.table} ({earlier[key][0]:,} rows then, {table.rows:,} now)")
        elif key in existing:
            foreign.append(f"{table.schema}.{table.table}")
    problems = []
    if foreign:
        problems.append(
            f"the lake already holds {', '.join(foreign)}, written by something other than this copy (a pipeline "
            "run on the lake?). Copy into a new, empty lake, or drop those tables from the lake first"
        )
    if changed:
        problems.append(
            f"the file warehouse changed after it was copied: {', '.join(changed)}. To copy it again, drop those "
            f"tables and their rows in main.{COPIES_TABLE} from the lake first"
        )
    if problems:
        raise CopyRefusedError("; ".join(problems) + ". Nothing was copied.")


def _copy_table(connection: duckdb.DuckDBPyConnection, lake: Lake, table: _SourceTable, source: Path) -> None:
    """One table and its record in one lake transaction: both are there, or neither."""
    target = f"{lake.alias}.{_quote(table.schema)}.{_quote(table.table)}"
    columns = ", ".join(
        f"{_quote(name)} {data_type}{'' if nullable else ' NOT NULL'}" for name, data_type, nullable in table.columns
    )
    names = ", ".join(_quote(name) for name, _, _ in table.columns)
    connection.execute("begin")
    try:
        connection.execute(f"create schema if not exists {lake.alias}.{_quote(table.schema)}")
        connection.execute(f"create table {target} ({columns})")
        connection.execute(
            f"insert into {target} ({names}) select {names} from {_SOURCE}.{_quote(table.schema)}.{_quote(table.table)}"
        )
        connection.execute(
            f"insert into {lake.alias}.main.{COPIES_TABLE} values (?, ?, ?, ?, ?, ?)",
            [table.schema, table.table, str(source), table.rows, table.checksum, dt.datetime.now(dt.UTC)],
        )
        connection.execute("commit")
    except BaseException:
        # a failed commit has ended the transaction already
        with contextlib.suppress(duckdb.Error):
            connection.execute("rollback")
        raise


def copy_file_warehouse(
    source: Path,
    lake: Lake,
    *,
    log: Callable[[str], None] | None = None,
    attempts: int | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> CopyReport:
    """Copy every table of the DuckDB file `source` into `lake` (see the module's docstring); say what was done.

    Raises:
        CopyRefusedError: the file is in use, a pipeline step held the lake for longer than `lock_timeout`, or
            the copy would mix histories; nothing was copied.
        LakeUnavailableError: the lake's catalog is down or refused the login.
    """
    source = Path(source).expanduser().resolve()
    report = CopyReport(source=source, lake=f"{lake.catalog.url()} ({lake.data_path})")
    # a pipeline step writing the lake meanwhile waits, and the copy waits for one that is writing
    with lake_writer_lock(lake, step="lake copy", log=log, timeout=lock_timeout, locked_error=CopyRefusedError):
        _copy_all(source, lake, report, log, attempts)
    return report


def _copy_all(
    source: Path, lake: Lake, report: CopyReport, log: Callable[[str], None] | None, attempts: int | None
) -> None:
    connection = lake.connect()
    try:
        _attach_source(connection, source)
        tables = _source_tables(connection, report)
        earlier = retry_commit_conflicts(lambda: _earlier_copies(connection, lake), log=log)
        _check(tables, _lake_tables(connection, lake), earlier)
        for table in tables:
            if (table.schema, table.table) in earlier:
                report.tables.append(TableCopy(table.schema, table.table, table.rows, copied=False))
                continue
            retry_kwargs = {"attempts": attempts} if attempts else {}
            retry_commit_conflicts(lambda t=table: _copy_table(connection, lake, t, source), log=log, **retry_kwargs)
            report.tables.append(TableCopy(table.schema, table.table, table.rows, copied=True))
            if log:
                log(f"copied {table.schema}.{table.table} ({table.rows:,} rows)")
    finally:
        connection.close()
