"""One writer of the concurrent-writers test: loads one account's series into a lake, in step with the others.

    python -m tests.lake_writer LAKE_URL DATA_PATH EXTENSION_DIR WORK_DIR ACCOUNT WRITERS

The test has loaded days 0-29 of every account (SEEDED_DAYS). Each writer rewrites days 20-29 of its account
(values + UPDATE_OFFSET) and adds days 30-39: a merge that deletes from the table the other writers merge into
too: unguarded, DuckLake reports commit conflicts and has kept rows twice. It extracts and normalizes first,
waits until every writer is ready, then goes for the lake's writer lock at the same moment as the others.
Prints one JSON line: the account, when it went for the lock, and its load's start and end (inside the lock).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from segment_pipeline.lake import Lake
from segment_pipeline.lake.loading import run_pipeline
from segment_pipeline.lake.writer_lock import lake_writer_lock

from .lake_helpers import lake_pipeline, series, series_resource

SEGMENTS = 40
SEEDED_DAYS = range(0, 30)
UPDATED_DAYS = range(20, 40)
UPDATE_OFFSET = 1000


def wait_for_all(barrier: Path, name: str, writers: int, timeout: float = 120) -> None:
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / name).touch()
    deadline = time.monotonic() + timeout
    while len(list(barrier.iterdir())) < writers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(barrier.iterdir()))} of {writers} writers got to {barrier.name}")
        time.sleep(0.05)


def main(url: str, data_path: str, extension_dir: str, work_dir: str, account: str, writers: int) -> None:
    lake = Lake.from_url(url, data_path, Path(extension_dir))
    work = Path(work_dir)
    pipeline = lake_pipeline(lake, f"series_{account}", work / "dlt" / account)
    pipeline.extract(series_resource(series(account, UPDATED_DAYS, SEGMENTS, UPDATE_OFFSET)))
    pipeline.normalize()
    wait_for_all(work / "barrier", account, writers)
    wanted = time.time()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with lake_writer_lock(lake, step=f"load {account}", log=log, timeout=180):
        started = time.time()
        run_pipeline(lake, pipeline, None, log=log)
        ended = time.time()
    print(json.dumps({"account": account, "wanted": wanted, "load": [started, ended]}), flush=True)


if __name__ == "__main__":
    url, data_path, extension_dir, work_dir, account, writers = sys.argv[1:]
    main(url, data_path, extension_dir, work_dir, account, int(writers))
