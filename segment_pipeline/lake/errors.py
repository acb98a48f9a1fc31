"""What went wrong with a lake, in words that say what to do; and which errors are worth another try.

DuckDB, dlt and dbt pass the PostgreSQL client's own message through several layers of wrapping. These helpers
read the whole chain of causes, so the pipeline, the copy command and the tests all recognise the same
situations the same way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from .catalog import PostgresCatalog

T = TypeVar("T")


class LakeUnavailableError(RuntimeError):
    """The lake's PostgreSQL catalog could not be reached, or refused the connection."""


class LakeCommitConflictError(RuntimeError):
    """Other writers kept committing first: a write still conflicted after every retry."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _text(error: BaseException) -> str:
    return "\n".join(str(link) for link in _chain(error))


# the PostgreSQL client's own words (libpq) for a catalog it cannot use
_UNREACHABLE = (
    "connection refused",
    "could not connect to server",
    "could not translate host name",
    "no route to host",
    "timeout expired",
    "connection timed out",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
)
# DuckLake's words for a commit another writer got in first, and DuckDB's for two transactions of one process
_CONFLICTS = ("transaction conflict", "write-write conflict")
_REFUSED_LOGIN = ("password authentication failed", "no password supplied", "fe_sendauth")


def catalog_problem(error: BaseException, catalog: PostgresCatalog) -> str | None:
    """A message for the lake's catalog being down or refusing us, or None when `error` is about something else."""
    text = _text(error)
    lowered = text.lower()
    where = f"the lake's PostgreSQL catalog {catalog.describe()}"
    if any(marker in lowered for marker in _REFUSED_LOGIN):
        return (
            f"{where} refused the login of user {catalog.user!r}: the password is wrong or missing. Set PGPASSWORD "
            "(or a password file named by PGPASSFILE) to that role's password and run again; nothing was written "
            "to the lake."
        )
    if f'database "{catalog.dbname.lower()}" does not exist' in lowered:
        return f"{where}: the database {catalog.dbname!r} does not exist. Create it (owned by {catalog.user!r})."
    if f'role "{catalog.user.lower()}" does not exist' in lowered:
        return f"{where}: the role {catalog.user!r} does not exist. Create it with a password."
    for marker in _UNREACHABLE:
        if marker in lowered:
            return (
                f"cannot reach {where} ({marker}). Check that PostgreSQL is running and that host and port in the "
                "warehouse setting are right, then run again; nothing was written to the lake."
            )
    return None


def is_not_created_yet(error: BaseException) -> bool:
    """Whether `error` is a read-only attach of a catalog in which no writer has created the lake yet."""
    return "creating a new ducklake is explicitly disabled" in _text(error).lower()


def is_creation_race(error: BaseException) -> bool:
    """Whether `error` is two writers creating a new lake's metadata at once (the other one got there first)."""
    lowered = _text(error).lower()
    return "already exists" in lowered or "duplicate key value" in lowered


def is_commit_conflict(error: BaseException) -> bool:
    """Whether `error` is DuckLake refusing a commit because another writer changed the same table first."""
    lowered = _text(error).lower()
    return any(marker in lowered for marker in _CONFLICTS)


# DuckLake already retries a commit whose changes do not overlap with another writer's (its own settings
# ducklake_max_retry_count and ducklake_retry_wait_ms); these retries are for the ones that do, such as two
# merges deleting from one table. Jitter keeps writers that collided from colliding again in step.
DEFAULT_CONFLICT_ATTEMPTS = 8
DEFAULT_CONFLICT_WAIT_SECONDS = 0.5
MAX_CONFLICT_WAIT_SECONDS = 15.0


def conflict_wait(attempt: int, base: float = DEFAULT_CONFLICT_WAIT_SECONDS) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): exponential with full jitter, at most 15 s."""
    return random.uniform(0, min(MAX_CONFLICT_WAIT_SECONDS, base * 2 ** (attempt - 1)))


def retry_commit_conflicts(
    action: Callable[[], T],
    *,
    retry: Callable[[], T] | None = None,
    attempts: int = DEFAULT_CONFLICT_ATTEMPTS,
    log: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`; after a commit conflict, wait and run `retry` (default: `action` again), up to `attempts` times.

    Errors other than conflicts pass through unchanged. When every attempt conflicted, LakeCommitConflictError
    says so; whatever the action keeps for a retry (dlt's pending load package) is still there.
    """
    again = retry or action
    attempt = 1
    while True:
        try:
            return action() if attempt == 1 else again()
        except Exception as exc:
            if not is_commit_conflict(exc):
                raise
            if attempt >= attempts:
                raise LakeCommitConflictError(
                    f"the lake refused the commit {attempts} times because other writers changed the same tables "
                    "first; nothing of this write is lost (it is retried as a whole). Run again, or run fewer "
                    "writers at once."
                ) from exc
            wait = conflict_wait(attempt)
            if log:
                log(f"commit conflict with another writer (attempt {attempt} of {attempts}); retrying in {wait:.1f} s")
            sleep(wait)
            attempt += 1
