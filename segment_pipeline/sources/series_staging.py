"""Durable staging of report responses: every paid response is on disk before the next request is sent.

Each response becomes one Parquet file under `<state dir>/staging/series/<account id>/`, written to a
temporary name, flushed to disk (fsync) and renamed into place, so a file is either a whole response or
absent. The load step reads the files one at a time (memory does not grow with the range) and deletes them
only after the warehouse committed them; a run that finds files left by a crashed or stopped run loads them
before planning, so no paid response is ever asked for twice.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..klaviyo import SeriesRequest

SUFFIX = ".parquet"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SeriesStaging:
    """The staged responses of one Klaviyo account.

    Args:
        root: the staging directory (`PipelineSettings.series_staging_dir`).
        account_id: the account; each account's files live apart.
    """

    def __init__(self, root: Path, account_id: str) -> None:
        self.directory = Path(root) / account_id

    def put(self, table: pa.Table, request: SeriesRequest) -> Path:
        """Keep one response's rows durably; returns the file. The name sorts in the order of arrival."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = hashlib.sha256("\x1f".join(request.segment_ids).encode()).hexdigest()[:10]
        name = f"{time.time_ns():020d}-{request.window.start}_{request.window.end}-{ids}{SUFFIX}"
        final = self.directory / name
        temp = self.directory / f".{name}.tmp"
        with open(temp, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        _fsync_dir(self.directory)
        return final

    def files(self) -> list[Path]:
        """Staged responses not loaded yet, oldest first (half-written temporary files are never listed)."""
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))

    @staticmethod
    def read(path: Path) -> pa.Table:
        return pq.read_table(path)

    def remove(self, paths: list[Path]) -> None:
        """Delete loaded files (and temporary files a crash left half-written)."""
        for path in paths:
            path.unlink(missing_ok=True)
        if self.directory.exists():
            for leftover in self.directory.glob(f".*{SUFFIX}.tmp"):
                leftover.unlink(missing_ok=True)
            _fsync_dir(self.directory)
