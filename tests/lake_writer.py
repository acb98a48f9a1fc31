"""One writer of the concurrent-writers test: loads one account's series into a lake in rounds, in step with the others.

    python -m tests.lake_writer LAKE_URL DATA_PATH EXTENSION_DIR WORK_DIR ACCOUNT WRITERS

The test has loaded days 0-29 of every account (SEEDED_DAYS). Each writer rewrites days 20-29 of its account
(values + UPDATE_OFFSET) and adds days 30-39: a merge that deletes from the table the other writers merge into
too, which is what makes DuckLake report commit conflicts. It extracts and normalizes first, then waits until
every writer is ready, so the loads (the part that writes the lake) start together. Prints one JSON line: the
account and its load's start and end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from segment_pipeline.lake import Lake
from segment_pipeline.lake.loading import run_pipeline

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
    started = time.time()
    run_pipeline(lake, pipeline, None, log=lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps({"account": account, "load": [started, time.time()]}), flush=True)


if __name__ == "__main__":
    url, data_path, extension_dir, work_dir, account, writers = sys.argv[1:]
    main(url, data_path, extension_dir, work_dir, account, int(writers))
