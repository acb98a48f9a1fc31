"""One writer at a time on a lake: a PostgreSQL advisory lock in the lake's own catalog database.

DuckLake lets writers commit at once and is meant to refuse the commits that collide. Its conflict checks are
not to be trusted with the merges this pipeline makes: four dlt merges into one table, started together, left
every row of an older data file in the table twice, with no error, about once in seventeen rounds on a loaded
two-core machine (DuckDB 1.5.5; tests/test_lake_stack.py ran the rounds). Several such holes are reported to
DuckLake (concurrent deletes of the same rows kept in two stores, deletes that match no row, maintenance next
to deletes). A silently doubled row is the worst thing this pipeline can produce, so its steps take turns on a
lake as they do on a file; what runs in parallel is the slow part, the requests to Klaviyo, which happen
outside the lock.

The lock is a session-level advisory lock on the catalog database: every machine that writes the lake already
reaches it, and PostgreSQL frees the lock the moment the holder's connection ends, so a killed run (kill -9, a
lost machine once TCP keepalives give up on it) never leaves it taken. The holder names itself (host, PID,
run, step) in its connection's `application_name`, which a waiting step reads to say whom it waits for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .errors import LakeUnavailableError, catalog_problem

if TYPE_CHECKING:
    from .location import Lake

# the first half of the advisory lock's key: this project's locks, whatever else shares the database
_LOCK_CLASS = zlib.crc32(b"segment-pipeline lake writer") & 0x7FFFFFFF
_POLL_SECONDS = 0.2
_LOG_EVERY_SECONDS = 60
# PostgreSQL keeps the first 63 bytes of application_name
_NAME_BYTES = 63
# server-side TCP keepalives on the lock's session: a holder whose machine vanished is let go within about a
# minute instead of the operating system's two hours
_SESSION_SETTINGS = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}

# taken once per process and lake: a step that holds it may enter again (nested steps of one in-process run)
_held = threading.local()


def lock_key(lake: Lake) -> tuple[int, int]:
    """The advisory lock's two int4 halves: this project, and the lake (its metadata schema in the database)."""
    lake_part = zlib.crc32(lake.metadata_schema.encode())
    return _LOCK_CLASS, lake_part - (1 << 32) if lake_part >= 1 << 31 else lake_part


def holder_name(run_id: str | None, step: str | None, pid: int | None = None) -> str:
    """What the lock's session calls itself: host, PID, run and step, cut to what PostgreSQL keeps (the step's
    end goes first)."""
    parts = ["segment-pipeline", f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"]
    if run_id:
        parts.append(f"run {run_id[:8]}")
    if step:
        parts.append(f"step {step}")
    return " ".join(parts).encode()[:_NAME_BYTES].decode(errors="ignore")


@contextlib.contextmanager
def lake_writer_lock(
    lake: Lake,
    *,
    run_id: str | None = None,
    step: str | None = None,
    log: Callable[[str], None] | None = None,
    timeout: float,
    locked_error: Callable[[str], Exception] = TimeoutError,
) -> Iterator[bool]:
    """Hold the lake for one step, waiting up to `timeout` s for whoever holds it; yields False when this thread
    held it already.

    Raises:
        LakeUnavailableError: the catalog is down or refused the login (nothing was written).
        `locked_error(message)`: another writer held the lake for longer than `timeout`.
    """
    key = lock_key(lake)
    held = (lake.catalog.libpq(), key)
    depths: dict[tuple[str, tuple[int, int]], int] = _held.__dict__.setdefault("depths", {})
    if depths.get(held):
        depths[held] += 1
        try:
            yield False
        finally:
            depths[held] -= 1
        return

    import psycopg2

    try:
        connection = psycopg2.connect(lake.catalog.libpq(), application_name=holder_name(run_id, step))
    except psycopg2.Error as exc:
        raise LakeUnavailableError(catalog_problem(exc, lake.catalog) or _unusable(lake, exc)) from exc
    try:
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for name, value in _SESSION_SETTINGS.items():
                    cursor.execute("select set_config(%s, %s, false)", [name, value])
                _wait_for(cursor, lake, key, log, timeout, locked_error)
        except psycopg2.Error as exc:
            raise LakeUnavailableError(catalog_problem(exc, lake.catalog) or _unusable(lake, exc)) from exc
        depths[held] = 1
        try:
            yield True
        finally:
            depths[held] = 0
            # closing the session frees the lock as well; unlocking first lets a waiter in without that delay
            with contextlib.suppress(psycopg2.Error), connection.cursor() as cursor:
                cursor.execute("select pg_advisory_unlock(%s, %s)", key)
    finally:
        connection.close()


def _wait_for(cursor, lake: Lake, key: tuple[int, int], log, timeout: float, locked_error) -> None:
    started = time.monotonic()
    last_logged: float | None = None
    while True:
        cursor.execute("select pg_try_advisory_lock(%s, %s)", key)
        if cursor.fetchone()[0]:
            # how long a step queued for the lake (make benchmark adds these up, as for the file's lock)
            if log and last_logged is not None:
                log(f"got the lake's writer lock after waiting {time.monotonic() - started:.1f} s")
            return
        waited = time.monotonic() - started
        holder = _holder(cursor, key)
        if waited >= timeout:
            from ..warehouse import LOCK_TIMEOUT_ENV

            raise locked_error(
                f"the lake {lake.catalog.describe()} is being written by another pipeline step ({holder}) for more "
                f"than {timeout:.0f} s; nothing was written. Wait for that run to finish and run again, or raise "
                f"{LOCK_TIMEOUT_ENV}."
            )
        if log and (last_logged is None or time.monotonic() - last_logged >= _LOG_EVERY_SECONDS):
            log(f"waiting for the lake's writer lock, held by {holder} (waited {waited:.0f} s)")
            last_logged = time.monotonic()
        time.sleep(_POLL_SECONDS)


def _holder(cursor, key: tuple[int, int]) -> str:
    """Who holds the lock, as its session named itself (PostgreSQL shows a role only its own sessions' names)."""
    cursor.execute(
        "select l.pid, a.application_name from pg_locks l left join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'advisory' and l.granted and l.classid::bigint = %s and l.objid::bigint = %s "
        "and l.objsubid = 2 and l.database = (select oid from pg_database where datname = current_database())",
        [key[0], key[1] & 0xFFFFFFFF],
    )
    row = cursor.fetchone()
    if row is None:
        return "a writer that has just finished"
    pid, name = row
    return name if name else f"a session of another role (PostgreSQL backend {pid})"


def _unusable(lake: Lake, error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = lake.catalog.describe()
    return f"the lake's PostgreSQL catalog {where} could not be used for its writer lock: {first_line}"
