"""Small reads of the DuckDB warehouse that the load steps need, the dlt pipelines that write it, and the
lock that lets one pipeline step at a time use the file.

DuckDB lets one process hold the file at a time, so every connection here is opened, used and closed at
once, and a lock held by someone else becomes an error that says what to do.

Steps take turns on the file through `warehouse_lock`: a kernel lock (`flock`) on a file next to the
warehouse. The kernel releases it when its holder dies in any way (kill -9, OOM, reboot), so a crashed run
never blocks the next one, on the command line as well as under the daemon.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import dlt

from . import state_files
from .config import (
    DEFAULT_DUCKDB_MEMORY_LIMIT,
    DEFAULT_DUCKDB_WAIT_SECONDS,
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DUCKDB_WRITE_SETTINGS,
    StorageSettings,
)
from .klaviyo.planner import SegmentFacts, settled_by
from .lake.errors import is_not_created_yet
from .lake.location import Lake
from .state_files import StateFileError
from .tables import (
    ACCOUNTS_TABLE,
    RAW_DATASET,
    SEGMENT_DEFINITIONS_TABLE,
    SEGMENT_SERIES_TABLE,
    SEGMENT_TAGS_TABLE,
    SEGMENTS_TABLE,
)


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
            # a read cannot know what the step wrote before it: say only what failed
            raise WarehouseLockedError(
                f"the warehouse {path} is locked by {lock_holder(exc)}, so it could not be read. Close that DuckDB "
                "session (analysts should open the analyst copy, ANALYTICS_PATH, instead) and run again."
            ) from exc
        raise
    try:
        yield connection
    finally:
        connection.close()


# where the reads below read: a DuckDB file, or a DuckLake
Source = Path | Lake


@contextlib.contextmanager
def reading(source: Source, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A short read-only connection to the file or the lake; None when there is no file yet (nothing stored).

    A lake is read through an in-memory DuckDB with the lake attached read-only and in use, so the same SQL
    (`klaviyo.segments`, `information_schema`) reads either; a catalog no load has written yet holds nothing.
    An unusable catalog raises LakeUnavailableError.
    """
    if isinstance(source, Lake):
        try:
            connection = source.connect(read_only=True, config={"memory_limit": memory_limit} if memory_limit else None)
        except duckdb.Error as exc:
            if not is_not_created_yet(exc):
                raise
            yield None  # the first load creates the lake
            return
        try:
            yield connection
        finally:
            connection.close()
        return
    if not source.exists():
        yield None
        return
    with read_connection(source) as connection:
        yield connection


# the settings that bound the waits below, named in messages that say what to raise
LOCK_TIMEOUT_ENV = "WAREHOUSE_LOCK_TIMEOUT_SECONDS"
DUCKDB_WAIT_ENV = "WAREHOUSE_DUCKDB_WAIT_SECONDS"
_LOCK_POLL_SECONDS = 0.5
_LOG_EVERY_SECONDS = 60

# the lock is taken once per process: a step that already holds it (the same run) may enter again
_held = threading.local()


def lock_path(warehouse_path: Path) -> Path:
    """The lock file next to the warehouse: `<warehouse>.lock`."""
    return warehouse_path.with_name(warehouse_path.name + ".lock")


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
    except ValueError:
        return "another process (it wrote no details)"
    if not isinstance(holder, dict):
        return "another process (it wrote no details)"
    parts = [f"PID {holder.get('pid')}"]
    if holder.get("run_id"):
        parts.append(f"run {holder['run_id']}")
    if holder.get("step"):
        parts.append(f"step {holder['step']}")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return ", ".join(parts)


def lock_holder_description(warehouse_path: Path) -> str | None:
    """Who holds the warehouse lock now (PID, run, step, since when), or None when nobody does."""
    path = lock_path(warehouse_path)
    if not path.exists():
        return None
    with open(path, "r+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return _describe_holder(handle.read())
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def wait_until_duckdb_opens(warehouse_path: Path, timeout: float, log: Callable[[str], None] | None = None) -> None:
    """Wait (bounded) until no other process has the file open, read-only or not.

    The warehouse lock says no *step* uses the file; a dbt child process of a killed run can still hold it
    for a few seconds until it finishes, and an analyst may have it open. The probe opens the file for
    writing, as the step will: DuckDB lets a read-only session share the file with other readers but with no
    writer, so a read-only probe would pass a read-only session by and the step's load would fail at once.
    Whoever still holds the file when the wait runs out gets named in a clear error.
    """
    if not warehouse_path.exists():
        return
    deadline = time.monotonic() + timeout
    logged = False
    while True:
        try:
            duckdb.connect(str(warehouse_path)).close()
            return
        except duckdb.Error as exc:
            if "different configuration" in str(exc):
                return  # this very process has the file open (an earlier step of an in-process run)
            if not is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"the warehouse {warehouse_path} is locked by {lock_holder(exc)} (DuckDB's own lock, which a "
                    f"read-only session holds too), still after waiting {timeout:.0f} s ({DUCKDB_WAIT_ENV}). Close "
                    "that DuckDB session (analysts should open the analyst copy, ANALYTICS_PATH, instead) and run "
                    "again; nothing was written."
                ) from exc
            if log and not logged:
                log(f"the warehouse file is still open in {lock_holder(exc)}; waiting up to {timeout:.0f} s")
                logged = True
            time.sleep(_LOCK_POLL_SECONDS)


@contextlib.contextmanager
def _kernel_lock(
    path: Path,
    held: threading.local,
    *,
    run_id: str | None,
    step: str | None,
    log: Callable[[str], None] | None,
    timeout: float,
    timed_out: Callable[[str], str],
) -> Iterator[bool]:
    """Hold an exclusive `flock` on `path`, waiting up to `timeout` s; yields False when this thread held it already.

    The holder (PID, run, step, since) is written into the file so that whoever waits can say for whom.
    `timed_out(holder)` is the message of the WarehouseLockedError raised when the wait runs out.
    """
    if getattr(held, "depth", 0):
        held.depth += 1
        try:
            yield False
        finally:
            held.depth -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a holder note that is not text (a damaged file) is shown as best it can be, never a decoding error
        handle = open(path, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115 - held open for the whole step
    except OSError as exc:
        raise StateFileError(
            f"the lock file {path} cannot be opened ({state_files.describe(exc)}): {state_files.advice(exc, path)}. "
            "Nothing was sent or written."
        ) from exc
    try:
        started = time.monotonic()
        last_logged = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # how long a step queued for the warehouse (make benchmark adds these up)
                if log and last_logged is not None:
                    log(f"got the lock {path} after waiting {time.monotonic() - started:.1f} s")
                break
            except BlockingIOError:
                handle.seek(0)
                holder = _describe_holder(handle.read())
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise WarehouseLockedError(timed_out(holder)) from None
                if log and (last_logged is None or time.monotonic() - last_logged >= _LOG_EVERY_SECONDS):
                    log(f"waiting for the lock {path}, held by {holder} (waited {waited:.0f} s)")
                    last_logged = time.monotonic()
                time.sleep(_LOCK_POLL_SECONDS)
        holder = {
            "pid": os.getpid(),
            "run_id": run_id,
            "step": step,
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        # the note only tells waiting steps whom they wait for: a full disk must not stop the step for it
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(holder))
            handle.flush()
        held.depth = 1
        try:
            yield True
        finally:
            held.depth = 0
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
                handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


@contextlib.contextmanager
def warehouse_lock(
    warehouse_path: Path,
    *,
    run_id: str | None = None,
    step: str | None = None,
    log: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    duckdb_wait: float = DEFAULT_DUCKDB_WAIT_SECONDS,
) -> Iterator[None]:
    """Hold the warehouse for one step: wait for the kernel lock, then for DuckDB's file lock.

    Args:
        warehouse_path: the DuckDB file.
        run_id, step: written into the lock file so a waiting step can say who it waits for.
        log: where to say that we wait, and for whom.
        timeout: seconds to wait for the lock (the setting WAREHOUSE_LOCK_TIMEOUT_SECONDS).
        duckdb_wait: seconds to then wait for DuckDB's own file lock (WAREHOUSE_DUCKDB_WAIT_SECONDS).

    Raises:
        WarehouseLockedError: the lock (or the file) stayed taken for longer than allowed.
    """

    def timed_out(holder: str) -> str:
        return (
            f"the warehouse {warehouse_path} is in use by another pipeline step ({holder}) for more "
            f"than {timeout:.0f} s; nothing was written. Wait for that run to finish and run again, "
            f"or raise {LOCK_TIMEOUT_ENV}."
        )

    with _kernel_lock(
        lock_path(warehouse_path), _held, run_id=run_id, step=step, log=log, timeout=timeout, timed_out=timed_out
    ) as first:
        if first:
            wait_until_duckdb_opens(warehouse_path, duckdb_wait, log)
        yield


# one Klaviyo conversation per account at a time: its pacing and its budget are counted by one process
_fetching = threading.local()


@contextlib.contextmanager
def account_fetch_lock(
    lock_file: Path,
    account_name: str,
    *,
    run_id: str | None = None,
    step: str | None = None,
    log: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> Iterator[None]:
    """Hold one account's Klaviyo requests for one step (a kernel lock, like the warehouse's).

    Runs of different accounts fetch at the same time; two runs of the same account would share its rate
    limits and budget from two processes, so the second waits (up to WAREHOUSE_LOCK_TIMEOUT_SECONDS).
    """

    def timed_out(holder: str) -> str:
        return (
            f"account {account_name!r} is being fetched by another run ({holder}) for more than {timeout:.0f} s; "
            f"nothing was sent. Wait for that run to finish and run again, or raise {LOCK_TIMEOUT_ENV}."
        )

    with _kernel_lock(lock_file, _fetching, run_id=run_id, step=step, log=log, timeout=timeout, timed_out=timed_out):
        yield


def _table_exists(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = connection.execute(
        "select count(*) from information_schema.tables "
        "where table_catalog = current_database() and table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def stored_segments(source: Source, account_id: str) -> list[dict]:
    """Every segment row stored for the account (deleted ones included), as dicts; definitions as JSON text."""
    with reading(source) as connection:
        if connection is None:
            return []
        if not _table_exists(connection, RAW_DATASET, SEGMENTS_TABLE):
            return []
        cursor = connection.execute(f"select * from {RAW_DATASET}.{SEGMENTS_TABLE} where account_id = ?", [account_id])
        names = [column[0] for column in cursor.description]
        # dlt's own columns (rows loaded as dicts have them, rows loaded as Arrow tables do not) are not the row's
        kept = [index for index, name in enumerate(names) if not name.startswith("_dlt_")]
        return [{names[index]: row[index] for index in kept} for row in cursor.fetchall()]


def _columns(connection: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {
        row[0]
        for row in connection.execute(
            "select column_name from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            [RAW_DATASET, table],
        ).fetchall()
    }


def stored_series_islands(
    source: Source, account_id: str, first: dt.date, last: dt.date, whole_history_of: list[str] | tuple[str, ...] = ()
) -> list[tuple[str, dt.date | None, dt.date, dt.date]]:
    """The account's stored series cells from `first` to `last`, as runs of consecutive days.

    Returns (segment_id, fetched_on, first_day, last_day) for each run of consecutive days of one segment
    fetched on the same day: a few rows per request instead of one per cell, so a year of 10,000 segments
    stays small. The segments of `whole_history_of` come with every stored day up to `last`, whatever `first`.
    Whether those days are final is the planner's decision, not this query's.
    """
    with reading(source) as connection:
        if connection is None:
            return []
        if not _table_exists(connection, RAW_DATASET, SEGMENT_SERIES_TABLE):
            return []
        # rows loaded before fetched_on existed have no fetch day: they count as never final
        has_fetched_on = "fetched_on" in _columns(connection, SEGMENT_SERIES_TABLE)
        fetched_on = "fetched_on" if has_fetched_on else "cast(null as date)"
        return connection.execute(
            f"""
            select segment_id, fetched_on, min(date), max(date)
            from (
                select segment_id, {fetched_on} as fetched_on, date,
                    date_diff('day', date '2000-01-01', date)
                        - row_number() over (partition by segment_id, {fetched_on} order by date) as island
                from {RAW_DATASET}.{SEGMENT_SERIES_TABLE}
                where account_id = ? and date <= ?
                    and (date >= ? or list_contains(?::varchar[], segment_id))
            )
            group by segment_id, fetched_on, island
            """,
            [account_id, last, first, list(whole_history_of)],
        ).fetchall()


def series_rows_by_day(source: Source, account_id: str, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    """How many series rows the account has stored for each day from `first` to `last` (days with none left out)."""
    with reading(source) as connection:
        if connection is None:
            return {}
        if not _table_exists(connection, RAW_DATASET, SEGMENT_SERIES_TABLE):
            return {}
        # `date >= ? and date <= ?`, not `between ? and ?`: at 3.65 million rows DuckDB 1.5 took 90 MB more
        # for the latter (measured); the former takes 5
        rows = connection.execute(
            f"select date, count(*) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE} "
            "where account_id = ? and date >= ? and date <= ? group by date",
            [account_id, first, last],
        ).fetchall()
    return dict(rows)


def newer_stored_cells(
    source: Source, account_id: str, fetches: list[tuple[tuple[str, ...], dt.date, dt.date, dt.date, dt.datetime]]
) -> list[set[tuple[str, dt.date]]]:
    """For each fetch (segment ids, first day, last day, fetched_on, fetched_at), the stored series cells of it
    that come from a newer fetch: loading that fetch must not overwrite them.

    A stored row is newer when its `fetched_at` is later; a row loaded before `fetched_at` existed is newer only
    when its `fetched_on` is a later day (the same day: the fetch being loaded wins).
    """
    if not fetches:
        return []
    with reading(source) as connection:
        if connection is None:
            return [set() for _ in fetches]
        if not _table_exists(connection, RAW_DATASET, SEGMENT_SERIES_TABLE):
            return [set() for _ in fetches]
        columns = _columns(connection, SEGMENT_SERIES_TABLE)
        if "fetched_at" in columns:
            newer = "coalesce(fetched_at > $fetched_at, fetched_on > $fetched_on)"
        elif "fetched_on" in columns:
            newer = "fetched_on > $fetched_on"
        else:
            return [set() for _ in fetches]
        query = (
            f"select segment_id, date from {RAW_DATASET}.{SEGMENT_SERIES_TABLE} where account_id = $account "
            f"and date between $first and $last and list_contains($ids, segment_id) and {newer}"
        )
        found = []
        for segment_ids, first, last, fetched_on, fetched_at in fetches:
            params = {
                "account": account_id,
                "first": first,
                "last": last,
                "ids": list(segment_ids),
                "fetched_on": fetched_on,
                "fetched_at": fetched_at,
            }
            if "fetched_at" not in columns:
                del params["fetched_at"]
            found.append({(sid, day) for sid, day in connection.execute(query, params).fetchall()})
    return found


def segment_settling_facts(source: Source, account_id: str, since: dt.date) -> list[SegmentFacts]:
    """What decides when each live segment's numbers settle (see `planner.settling_of`), one query.

    From `klaviyo.segments`: `created`, the last load that saw it `is_processing`, when it was last listed;
    `created` missing falls back to when the pipeline first saw the segment. From its stored series days
    since `since` (the oldest day Klaviyo still reports): the oldest day, the oldest non-zero day, the newest
    day's total_members and the oldest fetch day; read only for segments that may not have settled by then
    (`planner.settled_by`), since a year of 10,000 segments is millions of rows.
    """
    with reading(source) as connection:
        if connection is None:
            return []
        if not _table_exists(connection, RAW_DATASET, SEGMENTS_TABLE):
            return []
        segment_columns = _columns(connection, SEGMENTS_TABLE)
        seen = "processing_seen_at" if "processing_seen_at" in segment_columns else "cast(null as timestamptz)"
        series = "select null::varchar as segment_id, null::date as first_day, null::date as first_nonzero_day, "
        series += "null::bigint as members_now, null::date as first_fetched_on where false"
        parameters: dict = {"account": account_id}
        if _table_exists(connection, RAW_DATASET, SEGMENT_SERIES_TABLE):
            parameters.update(since=since, settled_by=settled_by(since))
            has_fetched_on = "fetched_on" in _columns(connection, SEGMENT_SERIES_TABLE)
            series = f"""
                select segment_id, min(date) as first_day,
                    min(date) filter (
                        where total_members <> 0 or members_added <> 0 or members_removed <> 0
                    ) as first_nonzero_day,
                    arg_max(total_members, date) as members_now,
                    {"min(fetched_on)" if has_fetched_on else "cast(null as date)"} as first_fetched_on
                from {RAW_DATASET}.{SEGMENT_SERIES_TABLE}
                where account_id = $account and date >= $since and segment_id in (
                    select id from {RAW_DATASET}.{SEGMENTS_TABLE}
                    where account_id = $account
                        and (created is null or created >= $settled_by or is_processing or {seen} >= $settled_by)
                )
                group by segment_id
            """
        first_seen = "select null::varchar as segment_id, null::timestamptz as first_seen where false"
        if _table_exists(connection, RAW_DATASET, SEGMENT_DEFINITIONS_TABLE):
            first_seen = f"""
                select segment_id, min(first_seen_at) as first_seen
                from {RAW_DATASET}.{SEGMENT_DEFINITIONS_TABLE} where account_id = $account group by segment_id
            """
        rows = connection.execute(
            f"""
            with series as ({series}), first_seen as ({first_seen})
            select s.id,
                epoch(coalesce(s.created, first_seen.first_seen)),
                epoch(s._loaded_at),
                epoch(case when s.is_processing then s._loaded_at else {seen} end),
                series.first_day, series.first_nonzero_day, series.members_now, series.first_fetched_on
            from {RAW_DATASET}.{SEGMENTS_TABLE} as s
            left join series on series.segment_id = s.id
            left join first_seen on first_seen.segment_id = s.id
            where s.account_id = $account and not coalesce(s.is_deleted, false)
            order by s.id
            """,
            parameters,
        ).fetchall()

    def moment(seconds: float | None) -> dt.datetime | None:
        return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)

    return [
        SegmentFacts(
            segment_id=segment_id,
            created=moment(created),
            listed_at=moment(listed_at),
            processing_seen_at=moment(processing_seen_at),
            first_stored_day=first_day,
            first_nonzero_day=first_nonzero_day,
            members_now=members_now,
            first_fetched_on=first_fetched_on,
        )
        for segment_id, created, listed_at, processing_seen_at, first_day, first_nonzero_day, members_now, (
            first_fetched_on
        ) in rows
    ]


def live_segments(source: Source, account_id: str) -> list[dict]:
    """The account's live segments (id, name, is_active, is_starred), by id: what a segment filter looks at."""
    with reading(source) as connection:
        if connection is None:
            return []
        if not _table_exists(connection, RAW_DATASET, SEGMENTS_TABLE):
            return []
        rows = connection.execute(
            f"select id, name, is_active, is_starred from {RAW_DATASET}.{SEGMENTS_TABLE} "
            "where account_id = ? and not coalesce(is_deleted, false) order by id",
            [account_id],
        ).fetchall()
    return [{"id": i, "name": n, "is_active": a, "is_starred": s} for i, n, a, s in rows]


def account_names_of(source: Source, account_id: str) -> list[str]:
    """The short names stored for a Klaviyo account id (klaviyo.accounts.account_name), other than NULL."""
    with reading(source) as connection:
        if connection is None:
            return []
        if not _table_exists(connection, RAW_DATASET, ACCOUNTS_TABLE):
            return []
        columns = {
            row[0]
            for row in connection.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [RAW_DATASET, ACCOUNTS_TABLE],
            ).fetchall()
        }
        if "account_name" not in columns:
            return []
        rows = connection.execute(
            f"select distinct account_name from {RAW_DATASET}.{ACCOUNTS_TABLE} "
            "where account_id = ? and account_name is not null",
            [account_id],
        ).fetchall()
    return [row[0] for row in rows]


def tags_loaded_at(source: Source, account_id: str) -> dt.datetime | None:
    """When the account's tags were last listed (the newest `_loaded_at` in klaviyo.segment_tags), or None."""
    with reading(source) as connection:
        if connection is None or not _table_exists(connection, RAW_DATASET, SEGMENT_TAGS_TABLE):
            return None
        (moment,) = connection.execute(
            f"select max(_loaded_at) from {RAW_DATASET}.{SEGMENT_TAGS_TABLE} where account_id = ?", [account_id]
        ).fetchone()
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def definition_version_count(source: Source, account_id: str) -> int:
    """How many definition versions are stored for the account."""
    with reading(source) as connection:
        if connection is None or not _table_exists(connection, RAW_DATASET, SEGMENT_DEFINITIONS_TABLE):
            return 0
        return connection.execute(
            f"select count(*) from {RAW_DATASET}.{SEGMENT_DEFINITIONS_TABLE} where account_id = ?", [account_id]
        ).fetchone()[0]


def dlt_pipeline(
    pipeline_name: str,
    warehouse: Source,
    pipelines_dir: Path,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
    dataset: str = RAW_DATASET,
    *,
    dlt_columns: bool = False,
) -> dlt.Pipeline:
    """A dlt pipeline writing the `dataset` schema (Klaviyo's RAW_DATASET unless told) of the warehouse (a file,
    or a lake through dlt's `ducklake` destination); its working dir stays in the project.

    `dlt_columns` stamps Arrow rows with dlt's `_dlt_load_id` and `_dlt_id`, as dlt does for rows given as
    dicts: tables first loaded from dicts have them as NOT NULL columns."""
    import dlt  # here, not at the top: the publish step and the demo need this module but not dlt
    from dlt.common.exceptions import DltException
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    # dlt would otherwise send anonymous telemetry; this machine and many production hosts have no internet
    dlt.config["runtime.dlthub_telemetry"] = False
    # dlt keeps a copy of every load's data files in its working folder (the state folder) unless told not to: a
    # copy of every response, kept for ever. The staged responses are the copy that matters, until a load commits.
    dlt.config["load.delete_completed_jobs"] = True
    for column in ("add_dlt_load_id", "add_dlt_id"):
        # a section named for the pipeline: the other pipelines' Arrow rows stay without them
        dlt.config[f"{pipeline_name}.normalize.parquet_normalizer.{column}"] = dlt_columns
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(warehouse, Lake):
        destination = warehouse.dlt_destination(
            pipeline_name, config={"memory_limit": memory_limit, **DUCKDB_WRITE_SETTINGS}
        )
    else:
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        credentials = DuckDbCredentials(
            str(warehouse), global_config={"memory_limit": memory_limit, **DUCKDB_WRITE_SETTINGS}
        )
        destination = dlt.destinations.duckdb(credentials)
    try:
        return dlt.pipeline(
            pipeline_name=pipeline_name,
            pipelines_dir=str(pipelines_dir),
            destination=destination,
            dataset_name=dataset,
        )
    except (ValueError, KeyError, TypeError, OSError, DltException) as exc:
        folder = pipelines_dir / pipeline_name
        cause = state_files.write_error_cause(exc)
        if cause is not None:
            raise StateFileError(
                f"dlt's working folder {folder} cannot be written ({state_files.describe(cause)}): "
                f"{state_files.advice(cause, folder)}. Nothing was loaded."
            ) from exc
        # its working folder (state, schema, load packages) is a copy of what the warehouse holds
        raise StateFileError(
            f"dlt's working folder of the {pipeline_name} load, {folder}, cannot be read "
            f"({type(exc).__name__}: {exc}). Nothing was loaded. Delete that folder and run again: dlt restores "
            "its state and schema from the warehouse, and staged report responses are kept until they are loaded."
        ) from exc


@dataclass(frozen=True)
class Holder:
    """Who takes a lock: written into the lock file so that whoever waits can say for whom, and where to say it."""

    run_id: str | None = None
    step: str | None = None
    log: logging.Logger | None = None

    def info(self, message: str) -> None:
        if self.log is not None:
            self.log.info(message)


@dataclass(frozen=True)
class Warehouse:
    """The warehouse as the pipeline's steps use it: its lock, short reads, and the dlt pipelines that load it.

    Built from the storage settings. Steps take turns, on a file and on a lake alike: every step that writes
    does so inside `lock()` (a file lock next to the DuckDB file; on a lake an advisory lock in its catalog,
    which every machine reaches). What runs at once is the requests to Klaviyo, outside the lock.
    """

    storage: StorageSettings

    @property
    def path(self) -> Path:
        """The DuckDB file (with a lake: where a file warehouse to move over would be)."""
        return self.storage.warehouse_path

    @property
    def lake(self) -> Lake | None:
        return self.storage.lake

    @property
    def location(self) -> Source:
        """What the reads of this module read: the lake, or the file."""
        return self.storage.lake or self.storage.warehouse_path

    @contextlib.contextmanager
    def lock(self, holder: Holder | None = None) -> Iterator[None]:
        """Hold the warehouse for one step, logging whom it waits for: the file's lock (see `warehouse_lock`), or
        on a lake its writer lock in the catalog (see `lake.writer_lock`: DuckLake's commits at once cannot be
        trusted to keep every row once)."""
        holder = holder or Holder()
        who = {"run_id": holder.run_id, "step": holder.step, "log": holder.info}
        timeout = self.storage.lock_timeout_seconds
        if self.lake is not None:
            from .lake.writer_lock import lake_writer_lock

            with lake_writer_lock(self.lake, **who, timeout=timeout, locked_error=WarehouseLockedError):
                yield
            return
        with warehouse_lock(self.path, **who, timeout=timeout, duckdb_wait=self.storage.duckdb_wait_seconds):
            yield

    @contextlib.contextmanager
    def read(self, holder: Holder | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short read-only connection under the lock (the checks' reads)."""
        if self.lake is not None:
            with reading(self.lake, self.storage.duckdb_memory_limit) as connection:
                yield connection
            return
        with self.lock(holder), read_connection(self.path) as connection:
            yield connection

    def pipeline(
        self, name: str, account: str | None = None, dataset: str = RAW_DATASET, *, dlt_columns: bool = False
    ) -> dlt.Pipeline:
        """The dlt pipeline `name` (of `account`'s runs). On a lake each account has its own pipeline: writers
        running at once need their own working folder and staging dataset (see `Lake.dlt_destination`).
        `dlt_columns`: see `dlt_pipeline`."""
        storage = self.storage
        if self.lake is not None and account:
            name = f"{name}_{account}"
        limit = storage.duckdb_load_memory_limit
        return dlt_pipeline(name, self.location, storage.dlt_pipelines_dir, limit, dataset, dlt_columns=dlt_columns)

    def load(self, pipeline: dlt.Pipeline, data: object, holder: Holder | None = None) -> None:
        """`pipeline.run(data)`; on a lake under its writer lock, a commit conflict (with a writer outside this
        pipeline) loads the same package again (never extracted twice), and an unusable catalog raises
        LakeUnavailableError, which says what to do."""
        if self.lake is None:
            pipeline.run(data)
            return
        from .lake.loading import run_pipeline

        holder = holder or Holder()
        # the steps hold it already; a caller that did not waits here rather than write beside another writer
        with self.lock(holder):
            # made before dlt attaches it: the first run on a new lake creates its metadata
            self.lake.create_if_missing()
            run_pipeline(self.lake, pipeline, data, log=holder.info)
