"""One account's run in the test of accounts writing a lake at once (tests/test_lake_pipeline.py).

    python -m tests.lake_account_run ACCOUNT WRITERS BARRIER_DIR FIRST_DAY LAST_DAY

Runs the product's own services for one account of the deployment the environment describes (the accounts
file, the lake): its segments, then its series from FIRST_DAY to LAST_DAY. Once its series are fetched, the run
waits at a barrier until every account's run has fetched too, so that all of them go for the lake at the same
moment and its writer lock has to make them take turns. Prints one JSON line: the account, when it went for the
lake, and its series load's start and end (inside the lock). With WRITERS 0: the series alone, no barrier (a
run in a fresh process, as Dagster starts each run).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

from segment_pipeline.ingest import series as series_step
from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.ingest.segments import refresh_segments
from segment_pipeline.ingest.series import load_series
from segment_pipeline.settings import load_settings
from segment_pipeline.warehouse import Holder, Warehouse

from .lake_writer import wait_for_all

SPANS: list[tuple[float, float]] = []
MEETING: dict = {}


class MeetingWarehouse(Warehouse):
    """The deployment's warehouse; it notes when its series load ran (inside the lake's writer lock)."""

    def load(self, pipeline, data, holder=None) -> None:
        if not pipeline.pipeline_name.startswith("klaviyo_series"):
            return super().load(pipeline, data, holder)
        started = time.time()
        super().load(pipeline, data, holder)
        SPANS.append((started, time.time()))


def meet_after_fetching(fetch):
    """`_fetch` of the series step, then the barrier: every account has its responses before any loads them."""

    def fetch_then_meet(*args, **kwargs):
        fetched = fetch(*args, **kwargs)
        # four runs on two cores: the slowest may take minutes to get here
        wait_for_all(MEETING["barrier"], MEETING["account"], MEETING["writers"], timeout=360)
        MEETING["met"] = time.time()
        return fetched

    return fetch_then_meet


def main(account_name: str, writers: int, barrier: str, first: str, last: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    log = logging.getLogger(account_name)
    MEETING.update(barrier=Path(barrier), account=account_name, writers=writers)
    if writers:
        series_step._fetch = meet_after_fetching(series_step._fetch)
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
    report = {"account": account_name, "met": MEETING.get("met"), "load": span, "rows": outcome.rows_written}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    name, writers, barrier, first, last = sys.argv[1:]
    main(name, int(writers), barrier, first, last)
