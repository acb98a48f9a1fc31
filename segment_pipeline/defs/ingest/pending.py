"""The record of series backfills the report budget cut short: what is left, and when it may resume.

The series step writes it (while holding the warehouse lock, so writers take turns) and the resume sensor
reads it. It is a small JSON file in the state dir, never a table in the warehouse: the sensor runs in the
daemon and must not take the DuckDB file from a running step. Written to a temporary file and renamed, so
a crash leaves the previous version whole.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ...config import DEFAULT_ACCOUNT_NAME

FORMAT_VERSION = 1


@dataclass(frozen=True)
class PendingRange:
    """An unfinished range of days: its requests done and left, and when the rest may be sent."""

    account_id: str
    start: str  # first partition key (inclusive)
    end: str  # last partition key (inclusive)
    requests_total: int
    requests_done: int
    resume_at: str  # ISO 8601, UTC: when the report budget has room again
    expected_finish: str  # ISO 8601, UTC: when the whole range should be loaded at this pace
    updated_at: str
    run_id: str | None = None
    # the account's short name (records written before accounts existed have none: the single account)
    account_name: str = DEFAULT_ACCOUNT_NAME

    @property
    def key(self) -> str:
        return f"{self.start}...{self.end}"

    @property
    def requests_left(self) -> int:
        return self.requests_total - self.requests_done

    def describe(self) -> str:
        account = "" if self.account_name == DEFAULT_ACCOUNT_NAME else f"{self.account_name} "
        return (
            f"{account}{self.key}: {self.requests_done} of {self.requests_total} report requests done, "
            f"{self.requests_left} left; resumes at {self.resume_at}, expected to finish at {self.expected_finish}"
        )


class PendingRecordError(RuntimeError):
    """The record cannot be read; the message says what to do."""


def read_pending(path: Path) -> dict[str, PendingRange]:
    """Unfinished ranges by key ("start...end"); empty when there is no record."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
        ranges = {key: PendingRange(**value) for key, value in data["ranges"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PendingRecordError(
            f"the record of unfinished backfills {path} is damaged ({exc}). Delete it and re-run the unfinished "
            "range: nothing already loaded is fetched again."
        ) from exc
    return ranges


def write_pending(path: Path, ranges: dict[str, PendingRange]) -> None:
    """Replace the record atomically (temporary file, fsync, rename); no ranges removes it."""
    if not ranges:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {"version": FORMAT_VERSION, "ranges": {key: asdict(value) for key, value in sorted(ranges.items())}}
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def record_unfinished(path: Path, entry: PendingRange) -> None:
    ranges = read_pending(path)
    ranges[entry.key] = entry
    write_pending(path, ranges)


def previous_total(path: Path, start: dt.date, end: dt.date) -> int | None:
    """The request count of the first attempt at this range, if it is unfinished."""
    try:
        entry = read_pending(path).get(f"{start.isoformat()}...{end.isoformat()}")
    except PendingRecordError:
        return None
    return entry.requests_total if entry else None


def record_finished(path: Path, start: dt.date, end: dt.date) -> list[str]:
    """Forget every unfinished range that lies within start..end (now complete); returns their keys."""
    ranges = read_pending(path)
    done = [
        key
        for key, entry in ranges.items()
        if dt.date.fromisoformat(entry.start) >= start and dt.date.fromisoformat(entry.end) <= end
    ]
    if done:
        write_pending(path, {k: v for k, v in ranges.items() if k not in done})
    return done
