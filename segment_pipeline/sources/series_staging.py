"""Durable staging of report responses: every paid response is on disk before the next request is sent.

Each response becomes one Parquet file under `<state dir>/staging/series/<account id>/`, written to a
temporary name, flushed to disk (fsync) and renamed into place, so a file is either a whole response or
absent. The load step reads the files one at a time (memory does not grow with the range) and deletes them
only after the warehouse committed them; a run that finds files left by a crashed or stopped run loads them
before planning, so no paid response is ever asked for twice.

Each file carries a label in its Parquet metadata: the account, the requested window and segment ids, the
account-local day and the moment of the fetch, the row count and a SHA-256 of the rows. A staged file is a
state file like any other, so nothing in it is trusted before the load:

- a file that cannot be read, whose label is damaged, whose rows do not match their checksum or their label,
  is moved aside to `<state dir>/quarantine/series/<account id>/` with a note saying why and what to do; the
  other files load, and the cells it held are simply missing, so the next run over those days asks for them;
- a file of another account is refused the same way, naming the account it belongs to;
- the newest fetch of a cell wins: rows carry `fetched_at`, the load drops the rows of a file for which the
  warehouse already holds a newer fetch, or another file of the same load does (so a load holds each cell
  once, and dlt's merge need not rank duplicates).

Before the first report request of a run, `check_room` makes sure the folder can be written and has room,
so a full disk or a read-only folder is found before anything is paid for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import state_files
from ..klaviyo import SERIES_ROW_SCHEMA, DayWindow, SeriesRequest
from ..klaviyo.errors import abbreviated
from ..klaviyo.limits import MAX_DAYS_PER_DAILY_SERIES, MAX_SEGMENT_IDS_PER_REPORT
from ..warehouse import Source, newer_stored_cells

SUFFIX = ".parquet"
LABEL_KEY = b"segment_pipeline.staged_response"
LABEL_FORMAT = 1
# one response holds at most one row per requested segment and day
MAX_ROWS = MAX_SEGMENT_IDS_PER_REPORT * MAX_DAYS_PER_DAILY_SERIES

# the columns the load adds to the parsed rows: the account-local day of the fetch (it decides finality,
# `planner.is_final`) and the moment the response arrived (it decides which of two fetches of a cell wins)
FETCHED_ON = pa.field("fetched_on", pa.date32())
FETCHED_AT = pa.field("fetched_at", pa.timestamp("us", tz="UTC"))
STAGED_SCHEMA = pa.schema([*SERIES_ROW_SCHEMA, FETCHED_ON, FETCHED_AT])
# files staged by versions before the label: no fetched_at, the moment of the fetch is in their name
_UNLABELLED_SCHEMA = pa.schema([*SERIES_ROW_SCHEMA, FETCHED_ON])
_UNLABELLED_NAME = re.compile(r"^(?P<ns>\d{20})-(?P<start>[\d-]{10})_(?P<end>[\d-]{10})-[0-9a-f]{10}\.parquet$")

# Room asked of the staging folder before a run pays for anything: each planned cell takes about 14 bytes in
# Parquet, and dlt's working copy of the load needs as much again in the same state folder; the margin covers
# Parquet's fixed overhead on small responses.
BYTES_PER_CELL = 64
MIN_FREE_BYTES = 1024 * 1024

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def stamp_fetch(table: pa.Table, fetched_on: dt.date, fetched_at: dt.datetime) -> pa.Table:
    """Parsed rows (SERIES_ROW_SCHEMA) with the day and the moment of their fetch, as they are staged."""
    rows = table.num_rows
    return table.append_column(FETCHED_ON, pa.array([fetched_on] * rows, FETCHED_ON.type)).append_column(
        FETCHED_AT, pa.array([fetched_at] * rows, FETCHED_AT.type)
    )


def rows_sha256(table: pa.Table) -> str:
    """A checksum of the rows' values, column by column (independent of how Parquet chunked them)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        column = table[name].combine_chunks()
        digest.update(f"{name}\0{column.type}\0{len(column)}\0".encode())
        if pa.types.is_string(column.type):
            # each value's length (-1: null), then the values: no two columns of text share both
            lengths = pc.binary_length(column).fill_null(-1).cast(pa.int64())
            digest.update(lengths.to_numpy(zero_copy_only=False).tobytes())
            digest.update("".join(v or "" for v in column.to_pylist()).encode())
        else:
            digest.update(column.is_null().to_numpy(zero_copy_only=False).tobytes())
            digest.update(column.fill_null(0).to_numpy(zero_copy_only=False).tobytes())
    return digest.hexdigest()


class LabelError(ValueError):
    """A staged file's label is missing a field or holds a value out of bounds."""


@dataclasses.dataclass(frozen=True)
class StagedLabel:
    """What identifies one staged response."""

    account_id: str
    window: DayWindow
    segment_ids: tuple[str, ...]
    fetched_on: dt.date
    fetched_at: dt.datetime
    rows: int
    sha256: str | None  # None: staged by a version before the label (the rows are checked, not summed)

    def describe(self) -> str:
        return (
            f"days {self.window.start}..{self.window.end} of {len(self.segment_ids)} segment(s) "
            f"({abbreviated(list(self.segment_ids))}), fetched at {self.fetched_at.isoformat(timespec='seconds')}"
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": LABEL_FORMAT,
                "account_id": self.account_id,
                "window": [self.window.start.isoformat(), self.window.end.isoformat()],
                "segment_ids": list(self.segment_ids),
                "fetched_on": self.fetched_on.isoformat(),
                "fetched_at": self.fetched_at.isoformat(),
                "rows": self.rows,
                "sha256": self.sha256,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StagedLabel:
        """The label read back, every value bounded; LabelError says which one is not."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise LabelError(f"its label is not JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != LABEL_FORMAT:
            raise LabelError(f"its label is not of format {LABEL_FORMAT}")
        try:
            account_id, segment_ids = data["account_id"], data["segment_ids"]
            start, end = (dt.date.fromisoformat(day) for day in data["window"])
            fetched_on = dt.date.fromisoformat(data["fetched_on"])
            fetched_at = dt.datetime.fromisoformat(data["fetched_at"])
            rows, sha256 = data["rows"], data["sha256"]
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelError(f"its label is damaged ({type(exc).__name__}: {exc})") from exc
        if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)):
            raise LabelError("its label's checksum is not a SHA-256")
        if not isinstance(segment_ids, list):
            raise LabelError("its label's segment ids are not one request's segment ids")
        return cls(
            account_id, DayWindow(start, end), tuple(segment_ids), fetched_on, fetched_at, rows, sha256
        ).checked()

    def checked(self) -> StagedLabel:
        """The label, every value within what one response can be; LabelError says which one is not."""
        if not (isinstance(self.account_id, str) and _ID.match(self.account_id)):
            raise LabelError("its label's account id is not an account id")
        if not 0 <= (self.window.end - self.window.start).days < MAX_DAYS_PER_DAILY_SERIES:
            raise LabelError(f"its label's window {self.window.start}..{self.window.end} is not one request's window")
        if not (
            0 < len(self.segment_ids) <= MAX_SEGMENT_IDS_PER_REPORT
            and all(isinstance(sid, str) and _ID.match(sid) for sid in self.segment_ids)
        ):
            raise LabelError("its label's segment ids are not one request's segment ids")
        if self.fetched_at.tzinfo is None:
            raise LabelError("its label's fetch moment has no timezone")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or not 0 < self.rows <= MAX_ROWS:
            raise LabelError(f"its label's row count {self.rows!r} is not one response's")
        return self


# why a file was set aside, and so what to do about it
DAMAGED = "damaged"
UNREADABLE = "unreadable"
OTHER_ACCOUNT = "other_account"


class StagedFileProblem(Exception):
    """A staged file cannot be loaded as it is."""

    def __init__(self, kind: str, problem: str, label: StagedLabel | None = None, owner: str | None = None) -> None:
        super().__init__(problem)
        self.kind, self.problem, self.label, self.owner = kind, problem, label, owner


@dataclasses.dataclass(frozen=True)
class SetAside:
    """A staged file moved out of the way of the load, and why."""

    file: Path
    moved_to: Path
    kind: str
    problem: str
    advice: str
    label: StagedLabel | None = None

    def describe(self) -> str:
        held = f" It held {self.label.describe()}." if self.label else ""
        return (
            f"The staged report response {self.file} {self.problem}; it was moved to {self.moved_to}.{held} "
            f"{self.advice}"
        )

    def as_metadata(self) -> dict:
        return {
            "file": str(self.file),
            "moved_to": str(self.moved_to),
            "problem": self.problem,
            "what_to_do": self.advice,
            **({"held": self.label.describe()} if self.label else {}),
        }


class ResponseNotKept(state_files.StateFileError):
    """A paid response could not be written to the staging folder."""


class SeriesStaging:
    """The staged responses of one Klaviyo account.

    Args:
        root: the staging directory (`PipelineSettings.series_staging_dir`).
        account_id: the account; each account's files live apart.
        quarantine_root: where files that cannot be loaded are moved (`PipelineSettings.series_quarantine_dir`);
            each account's apart.
    """

    def __init__(self, root: Path, account_id: str, quarantine_root: Path) -> None:
        self.root = Path(root)
        self.account_id = account_id
        self.directory = self.root / account_id
        self.quarantine = Path(quarantine_root) / account_id

    # -- writing -------------------------------------------------------------------------------------------

    def check_room(self, cells: int) -> None:
        """Before the first report request: the folder can be written and has room for `cells` cells.

        Raises:
            StateFileError: naming the folder, what is wrong and what to do; nothing was sent yet.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}.tmp"
            try:
                with open(probe, "wb") as handle:
                    handle.write(b"\0" * 4096)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                with contextlib.suppress(FileNotFoundError):
                    probe.unlink()
            stats = os.statvfs(self.directory)
        except OSError as exc:
            raise state_files.StateFileError(
                f"the staging folder {self.directory} cannot be written ({state_files.describe(exc)}): "
                f"{state_files.advice(exc, self.directory)}. No report request was sent."
            ) from exc
        free = stats.f_bavail * stats.f_frsize
        needed = max(MIN_FREE_BYTES, cells * BYTES_PER_CELL)
        if free < needed:
            raise state_files.StateFileError(
                f"the staging folder {self.directory} has {_size(free)} free, less than the {_size(needed)} this "
                f"run's responses ({cells} cells) and their load need: free space on that disk (or point "
                "PIPELINE_STATE_DIR at a disk with room) and run again. No report request was sent."
            )

    def put(self, table: pa.Table, request: SeriesRequest) -> Path:
        """Keep one response's rows (STAGED_SCHEMA, not empty) durably; returns the file.

        Raises:
            ResponseNotKept: the file could not be written; the message says which response was lost.
        """
        fetched_on = table["fetched_on"][0].as_py()
        fetched_at = table["fetched_at"][0].as_py()
        label = StagedLabel(
            self.account_id,
            request.window,
            request.segment_ids,
            fetched_on,
            fetched_at,
            table.num_rows,
            rows_sha256(table),
        )
        ids = hashlib.sha256("\x1f".join(request.segment_ids).encode()).hexdigest()[:10]
        # the name sorts in the order of arrival
        name = f"{time.time_ns():020d}-{request.window.start}_{request.window.end}-{ids}{SUFFIX}"
        final = self.directory / name
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata({LABEL_KEY: label.to_json()}), sink)
        try:
            state_files.write_atomically(final, sink.getvalue().to_pybytes(), what="the staged report response")
        except state_files.StateFileError as exc:
            cause = exc.__cause__
            raise ResponseNotKept(
                f"the report response for {label.describe()} ({label.rows} rows) was received but could not be "
                f"kept: writing it to {self.directory} failed ({state_files.describe(cause)}): "
                f"{state_files.advice(cause, self.directory)}. The request was counted in the report ledger of "
                f"account {self.account_id} (it used one of the day's report requests); the next run asks for "
                "those cells again."
            ) from cause
        return final

    # -- reading -------------------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Staged responses not loaded yet, in order of arrival (half-written temporary files are never listed)."""
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))

    def read(self, path: Path) -> pa.Table:
        """One staged response as rows of STAGED_SCHEMA, checked against its label and this account.

        Raises:
            StagedFileProblem: the file cannot be read, or is not a whole response of this account.
        """
        return self._read(path)[1]

    def _read(self, path: Path) -> tuple[StagedLabel, pa.Table]:
        try:
            with open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                schema = parquet.schema_arrow
                if parquet.metadata.num_rows > MAX_ROWS:
                    raise StagedFileProblem(
                        DAMAGED, f"holds {parquet.metadata.num_rows} rows, more than one response ({MAX_ROWS})"
                    )
                table = parquet.read()
        except StagedFileProblem:
            raise
        except OSError as exc:
            if isinstance(exc, pa.ArrowException):
                raise StagedFileProblem(DAMAGED, f"is not a whole Parquet file ({exc})") from exc
            raise StagedFileProblem(UNREADABLE, f"cannot be read ({state_files.describe(exc)})") from exc
        except (pa.ArrowException, ValueError) as exc:
            raise StagedFileProblem(DAMAGED, f"is not a whole Parquet file ({exc})") from exc
        raw = (schema.metadata or {}).get(LABEL_KEY)
        if raw is None:
            return self._unlabelled(path, table)
        try:
            label = StagedLabel.from_json(raw)
        except LabelError as exc:
            raise StagedFileProblem(DAMAGED, str(exc)) from exc
        table = table.replace_schema_metadata(None)
        if not _same_columns(table.schema, STAGED_SCHEMA):
            raise StagedFileProblem(DAMAGED, "does not have the columns of a staged response", label)
        if table.num_rows != label.rows or rows_sha256(table) != label.sha256:
            raise StagedFileProblem(
                DAMAGED, "does not match its checksum: its rows were changed or damaged after they were written", label
            )
        _check_rows(table, label)
        return self._mine(label), table

    def _mine(self, label: StagedLabel) -> StagedLabel:
        if label.account_id != self.account_id:
            raise StagedFileProblem(
                OTHER_ACCOUNT,
                f"belongs to Klaviyo account {label.account_id}, not {self.account_id}",
                label,
                owner=label.account_id,
            )
        return label

    def _unlabelled(self, path: Path, table: pa.Table) -> tuple[StagedLabel, pa.Table]:
        """A file staged before files carried a label: its rows say whose they are, its name when they came."""
        named = _UNLABELLED_NAME.match(path.name)
        if not named or not _same_columns(table.schema, _UNLABELLED_SCHEMA) or table.num_rows == 0:
            raise StagedFileProblem(DAMAGED, "carries no label: it is not a staged response of this pipeline")
        accounts = table["account_id"].unique().to_pylist()
        fetched_on = table["fetched_on"].unique().to_pylist()
        if len(accounts) != 1 or len(fetched_on) != 1 or None in accounts + fetched_on:
            raise StagedFileProblem(DAMAGED, "mixes accounts or fetch days, which no response does")
        try:
            window = DayWindow(dt.date.fromisoformat(named["start"]), dt.date.fromisoformat(named["end"]))
            fetched_at = dt.datetime.fromtimestamp(int(named["ns"]) / 1e9, dt.UTC)
            segment_ids = tuple(sorted(table["segment_id"].drop_null().unique().to_pylist()))
            label = StagedLabel(accounts[0], window, segment_ids, fetched_on[0], fetched_at, table.num_rows, None)
            label.checked()
        except (ValueError, OverflowError, OSError) as exc:  # LabelError is a ValueError
            raise StagedFileProblem(DAMAGED, f"is not a response staged by an earlier version ({exc})") from exc
        table = table.replace_schema_metadata(None).append_column(
            FETCHED_AT, pa.array([fetched_at] * table.num_rows, FETCHED_AT.type)
        )
        _check_rows(table, label)
        return self._mine(label), table

    def review(self) -> tuple[list[tuple[Path, StagedLabel]], list[SetAside]]:
        """Every staged file checked: the sound ones, oldest fetch first, and those moved aside.

        Raises:
            StateFileError: a file that cannot be loaded could not be moved aside either.
        """
        sound: list[tuple[Path, StagedLabel]] = []
        set_aside: list[SetAside] = []
        for path in self.files():
            try:
                label, _ = self._read(path)
            except StagedFileProblem as problem:
                set_aside.append(self._set_aside(path, problem))
                continue
            sound.append((path, label))
        sound.sort(key=lambda item: (item[1].fetched_at, item[0].name))
        return sound, set_aside

    def _advice(self, problem: StagedFileProblem) -> str:
        if problem.kind == OTHER_ACCOUNT:
            return (
                f"It holds rows of Klaviyo account {problem.owner}: if this deployment loads that account, move it "
                f"into {self.root / problem.owner}/ and that account's next run loads it; otherwise delete it."
            )
        refetched = (
            "Whatever of its cells the warehouse lacks is fetched again by the next run over those days (this "
            "run, if they are among its days), at the cost of report requests."
        )
        if problem.kind == UNREADABLE:
            return (
                f"If the file itself is sound, make it readable and move it back into {self.directory}/: the next "
                f"run loads it (a newer fetch of the same cells is never overwritten). Otherwise delete it. {refetched}"
            )
        return f"{refetched} Delete the file once you no longer need it."

    def _set_aside(self, path: Path, problem: StagedFileProblem) -> SetAside:
        advice = self._advice(problem)
        target = self.quarantine / path.name
        if target.exists():
            target = self.quarantine / f"{time.time_ns():020d}-{path.name}"
        try:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.move(path, target)  # the quarantine is on another file system than the staging folder
            state_files.fsync_folder(self.quarantine)
        except OSError as exc:
            raise state_files.StateFileError(
                f"the staged report response {path} {problem.problem}, and it could not be moved aside to "
                f"{self.quarantine} ({state_files.describe(exc)}): {state_files.advice(exc, self.quarantine)}; "
                "or move it out of the staging folder by hand. Nothing was loaded."
            ) from exc
        aside = SetAside(path, target, problem.kind, problem.problem, advice, problem.label)
        # a note beside it for whoever finds the folder; the run's log and metadata say the same
        with contextlib.suppress(OSError):
            target.with_name(target.name + ".why.txt").write_text(aside.describe() + "\n", encoding="utf-8")
        return aside

    def remove(self, paths: list[Path]) -> None:
        """Delete loaded files (and temporary files a crash left half-written)."""
        for path in paths:
            path.unlink(missing_ok=True)
        if self.directory.exists():
            for leftover in self.directory.glob(f".*{SUFFIX}*.tmp"):
                leftover.unlink(missing_ok=True)
            state_files.fsync_folder(self.directory)


def _same_columns(schema: pa.Schema, expected: pa.Schema) -> bool:
    return [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in expected]


def _check_rows(table: pa.Table, label: StagedLabel) -> None:
    """The rows are the label's: its account, segments and window, fetched when it says, each cell once."""
    problems = []
    if set(table["account_id"].unique().to_pylist()) != {label.account_id}:
        problems.append("rows of another account")
    if not set(table["segment_id"].unique().to_pylist()) <= set(label.segment_ids):
        problems.append("segments it did not request")
    days = table["date"]
    if days.null_count or min(days.to_pylist()) < label.window.start or max(days.to_pylist()) > label.window.end:
        problems.append("days outside its window")
    if table["fetched_on"].unique().to_pylist() != [label.fetched_on]:
        problems.append("another fetch day")
    if table["fetched_at"].unique().to_pylist() != [label.fetched_at]:
        problems.append("another fetch moment")
    keys = {(s, d) for s, d in zip(table["segment_id"].to_pylist(), days.to_pylist(), strict=True)}
    if len(keys) != table.num_rows:
        problems.append("a cell twice")
    if problems:
        raise StagedFileProblem(DAMAGED, f"does not match its label: it holds {', '.join(problems)}", label)


def _size(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"


@dataclasses.dataclass
class StagedLoad:
    """One load of an account's staged responses: the sound files, the rows of each that are not older than
    the warehouse's, and the files set aside."""

    staging: SeriesStaging
    files: list[Path]
    set_aside: list[SetAside]
    # per file, the cells the warehouse holds a newer fetch of: those rows of the file are not loaded
    superseded: dict[Path, set[tuple[str, dt.date]]]
    # per file, the (segments, window) of the newer files of this load that overlap it: their rows win
    replaced: dict[Path, list[tuple[frozenset[str], DayWindow]]] = dataclasses.field(default_factory=dict)
    rows: int = 0
    rows_superseded: int = 0
    # rows loaded per day, for the per-day metadata of the days they belong to
    rows_by_day: Counter = dataclasses.field(default_factory=Counter)

    def read(self, path: Path) -> pa.Table:
        """The rows of a file to load (the source reads them one file at a time)."""
        table = self.staging.read(path)
        stale = self.superseded.get(path)
        if stale:
            keep = [(s, d) not in stale for s, d in zip(table["segment_id"].to_pylist(), table["date"].to_pylist())]
            kept = table.filter(pa.array(keep))
            self.rows_superseded += table.num_rows - kept.num_rows
            table = kept
        for segment_ids, window in self.replaced.get(path, ()):
            newer = pc.and_(
                pc.is_in(table["segment_id"], pa.array(sorted(segment_ids), pa.string())),
                pc.and_(
                    pc.greater_equal(table["date"], pa.scalar(window.start, pa.date32())),
                    pc.less_equal(table["date"], pa.scalar(window.end, pa.date32())),
                ),
            )
            table = table.filter(pc.invert(newer))
        self.rows += table.num_rows
        if table.num_rows:
            counts = table.group_by("date").aggregate([("date", "count")])
            self.rows_by_day.update(
                dict(zip(counts["date"].to_pylist(), counts["date_count"].to_pylist(), strict=True))
            )
        return table


def load_failure(exc: BaseException, staging: SeriesStaging) -> state_files.StateFileError | None:
    """A load that failed because a file could not be written (disk full, read-only, no access), in words."""
    cause = state_files.write_error_cause(exc)
    if cause is None:
        return None
    where = Path(cause.filename) if cause.filename else staging.directory
    return state_files.StateFileError(
        f"the staged report responses of account {staging.account_id} could not be loaded: writing failed "
        f"({state_files.describe(cause)}{f', {cause.filename}' if cause.filename else ''}): "
        f"{state_files.advice(cause, where)}. They stay in {staging.directory} and the next run loads them; "
        "nothing paid for is lost."
    )


def prepare_load(staging: SeriesStaging, warehouse: Source) -> StagedLoad:
    """Check every staged file (moving aside those that cannot be loaded) and find, for each sound one, the
    cells the warehouse already holds a newer fetch of. Call it under the warehouse lock, before the load."""
    sound, set_aside = staging.review()
    newer = newer_stored_cells(
        warehouse,
        staging.account_id,
        [(lb.segment_ids, lb.window.start, lb.window.end, lb.fetched_on, lb.fetched_at) for _, lb in sound],
    )
    return StagedLoad(
        staging,
        [path for path, _ in sound],
        set_aside,
        {path: cells for (path, _), cells in zip(sound, newer, strict=True) if cells},
        replaced_in_load(sound),
    )


def replaced_in_load(sound: list[tuple[Path, StagedLabel]]) -> dict[Path, list[tuple[frozenset[str], DayWindow]]]:
    """For each file (oldest fetch first, as `review` orders them), the segments and window of every newer file
    that shares cells with it. Compared by label, not by cell: a year of 10,000 segments is 700 files of 6,000
    cells, and only files of the same days can overlap."""
    replaced: dict[Path, list[tuple[frozenset[str], DayWindow]]] = {}
    ids = [frozenset(label.segment_ids) for _, label in sound]
    for index, (path, label) in enumerate(sound):
        for later in range(index + 1, len(sound)):
            window = sound[later][1].window
            if window.start <= label.window.end and label.window.start <= window.end and ids[index] & ids[later]:
                replaced.setdefault(path, []).append((ids[later], window))
    return replaced
