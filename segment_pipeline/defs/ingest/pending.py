"""The record of series backfills the report budget cut short: what is left, and when it may resume.

The series step writes it (while holding the warehouse lock, so writers take turns) and the resume sensor
reads it. It is a small JSON file in the state dir, never a table in the warehouse: the sensor runs in the
daemon and must not take the DuckDB file from a running step. Written to a temporary file and renamed, so
a crash leaves the previous version whole.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ... import state_files
from ...config import DEFAULT_ACCOUNT_NAME
from ...state_files import StateFileError

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


class PendingRecordError(StateFileError):
    """The record cannot be read or written; the message says what to do."""


_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# far more requests than a year of a million segments needs: anything larger was not written by a run
_MAX_REQUESTS = 10_000_000


def _checked(entry: PendingRange) -> PendingRange:
    """A range read back, every value bounded; ValueError/TypeError says which one is not."""
    if not isinstance(entry.account_id, str) or not _ACCOUNT_ID.match(entry.account_id):
        raise ValueError(f"account_id {entry.account_id!r} is not an account id")
    if not isinstance(entry.account_name, str) or not entry.account_name:
        raise ValueError(f"account_name {entry.account_name!r} is not an account name")
    if dt.date.fromisoformat(entry.start) > dt.date.fromisoformat(entry.end):
        raise ValueError(f"the range {entry.start}...{entry.end} ends before it starts")
    for name in ("requests_total", "requests_done"):
        value = getattr(entry, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_REQUESTS:
            raise ValueError(f"{name} {value!r} is not a request count")
    if entry.requests_done > entry.requests_total:
        raise ValueError("more requests are done than the range has")
    for name in ("resume_at", "expected_finish", "updated_at"):
        if dt.datetime.fromisoformat(getattr(entry, name)).tzinfo is None:
            raise ValueError(f"{name} {getattr(entry, name)!r} has no timezone")
    if entry.run_id is not None and not isinstance(entry.run_id, str):
        raise ValueError(f"run_id {entry.run_id!r} is not a run id")
    return entry


def read_pending(path: Path) -> dict[str, PendingRange]:
    """Unfinished ranges by key ("start...end"); empty when there is no record."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise PendingRecordError(
            f"the record of unfinished backfills {path} cannot be read ({exc}). Make it readable, or delete it and "
            "re-run the unfinished range: nothing already loaded is fetched again."
        ) from exc
    try:
        data = json.loads(text)
        ranges = {key: _checked(PendingRange(**value)) for key, value in data["ranges"].items()}
        if any(key != entry.key for key, entry in ranges.items()):
            raise ValueError("a range is filed under another range's key")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PendingRecordError(
            f"the record of unfinished backfills {path} is damaged ({exc}). Delete it and re-run the unfinished "
            "range: nothing already loaded is fetched again."
        ) from exc
    return ranges


def write_pending(path: Path, ranges: dict[str, PendingRange]) -> None:
    """Replace the record atomically (temporary file, fsync, rename); no ranges removes it."""
    unwritten = (
        "Everything received is loaded; once it can be written, re-run the same range to finish it (the resume "
        "sensor reads this record)."
    )
    if not ranges:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise PendingRecordError(
                f"could not remove the record of unfinished backfills {path} ({state_files.describe(exc)}): "
                f"{state_files.advice(exc, path)}. {unwritten}"
            ) from exc
        return
    payload = {"version": FORMAT_VERSION, "ranges": {key: asdict(value) for key, value in sorted(ranges.items())}}
    try:
        state_files.write_atomically(
            path, json.dumps(payload, indent=1).encode(), what="the record of unfinished backfills"
        )
    except StateFileError as exc:
        raise PendingRecordError(f"{exc}. {unwritten}") from exc


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
