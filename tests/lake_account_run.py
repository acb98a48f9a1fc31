"""One account's run in the test of accounts loading a lake at once (tests/test_lake_pipeline.py).

    python -m tests.lake_account_run ACCOUNT WRITERS BARRIER_DIR FIRST_DAY LAST_DAY

Runs the product's own services for one account of the deployment the environment describes (the accounts
file, the lake): its segments, then its series from FIRST_DAY to LAST_DAY. The series load waits at a barrier
until every account's run has fetched, so the loads start together; on a warehouse that took one step at a
time the first load would hold the others back and the barrier would never fill. Prints one JSON line: the
account and its series load's start and end. With WRITERS 0: the series alone, no barrier (a run in a fresh
process, as Dagster starts each run).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.ingest.segments import refresh_segments
from segment_pipeline.ingest.series import load_series
from segment_pipeline.settings import load_settings
from segment_pipeline.warehouse import Holder, Warehouse

from .lake_writer import wait_for_all

SPANS: list[tuple[float, float]] = []
MEETING: dict = {}


class MeetingWarehouse(Warehouse):
    """The deployment's warehouse; its series load first meets the other accounts' at the barrier."""

    def load(self, pipeline, data, holder=None) -> None:
        if not MEETING["writers"] or not pipeline.pipeline_name.startswith("klaviyo_series"):
            return super().load(pipeline, data, holder)
        # four runs on two cores: the slowest may take minutes to get here
        wait_for_all(MEETING["barrier"], MEETING["account"], MEETING["writers"], timeout=360)
        started = time.time()
        super().load(pipeline, data, holder)
        SPANS.append((started, time.time()))


def main(account_name: str, writers: int, barrier: str, first: str, last: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    log = logging.getLogger(account_name)
    MEETING.update(barrier=Path(barrier), account=account_name, writers=writers)
    settings = load_settings()
    access = KlaviyoAccess(settings, settings.accounts[account_name])
    warehouse = MeetingWarehouse(settings.storage)
    holder = Holder(run_id=f"test-{account_name}", step="series", log=log)
    if writers:
        refresh_segments(access, warehouse, holder, log)
    outcome = load_series(
        access, warehouse, dt.date.fromisoformat(first), dt.date.fromisoformat(last), holder=holder, log=log
    )
    span = SPANS[-1] if SPANS else None
    print(json.dumps({"account": account_name, "load": span, "rows": outcome.rows_written}), flush=True)


if __name__ == "__main__":
    name, writers, barrier, first, last = sys.argv[1:]
    main(name, int(writers), barrier, first, last)
