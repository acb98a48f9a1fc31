"""`segment_growth_resume_sensor`: finishes series backfills that the report budget cut short.

A range that needs more report requests than the budget has left sends what fits and records the rest in
the state dir (`pending.py`). This sensor reads that record (never the warehouse: it must not take the
DuckDB file from a running step) and, once the resume time has passed and the budget has room, starts the
daily job for the unfinished range, attempt after attempt, until the range is complete. Its skip messages
and cursor show each range's progress.

On by default (it only ever resumes ranges someone started); turn it off in the UI (Automation) or with
`dagster sensor stop segment_growth_resume_sensor`. It needs the daemon (`dagster dev` runs one).
"""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg

from ..resources import KlaviyoResource, WarehouseResource
from ..schedules import segment_growth_job
from .pending import PendingRecordError, read_pending

SENSOR_NAME = "segment_growth_resume_sensor"
# runs the sensor starts carry the range they resume, so it can tell whether one is still going
RESUME_TAG = "segment_pipeline/resumes"
INTERVAL_ENV = "SERIES_RESUME_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 300
# resume runs that ended without moving the record on (a crash, a bad response): stop after this many
MAX_ATTEMPTS_WITHOUT_PROGRESS = 3
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _interval() -> int:
    raw = os.environ.get(INTERVAL_ENV)
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else DEFAULT_INTERVAL_SECONDS


@dg.sensor(
    name=SENSOR_NAME,
    job=segment_growth_job,
    minimum_interval_seconds=_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Resumes series backfills the Klaviyo report budget cut short: when the budget has room again it "
        "runs segment_growth_job for the unfinished range, until the range is complete. Reads the record "
        "PIPELINE_STATE_DIR/series_pending.json, never the warehouse."
    ),
)
def segment_growth_resume_sensor(
    context: dg.SensorEvaluationContext, klaviyo: KlaviyoResource, warehouse: WarehouseResource
):
    try:
        pending = read_pending(warehouse.settings.series_pending_path)
    except PendingRecordError as exc:
        return dg.SkipReason(str(exc))
    context.update_cursor(
        json.dumps(
            {
                key: {
                    "requests_done": e.requests_done,
                    "requests_left": e.requests_left,
                    "resume_at": e.resume_at,
                    "expected_finish": e.expected_finish,
                }
                for key, e in pending.items()
            },
            sort_keys=True,
        )
    )
    if not pending:
        return dg.SkipReason("no unfinished series backfill")
    now = dt.datetime.now(dt.UTC)
    requests, notes = [], []
    for key, entry in sorted(pending.items()):
        active = context.instance.get_runs(dg.RunsFilter(tags={RESUME_TAG: key}, statuses=_ACTIVE), limit=1)
        if active:
            notes.append(f"{entry.describe()}; run {active[0].run_id} is resuming it")
            continue
        if dt.datetime.fromisoformat(entry.resume_at) > now:
            notes.append(entry.describe())
            continue
        if klaviyo.budget(entry.account_id).remaining() <= 0:
            notes.append(f"{entry.describe()}; waiting for room in the report budget")
            continue
        ended = context.instance.get_runs(
            dg.RunsFilter(tags={RESUME_TAG: key}, created_after=dt.datetime.fromisoformat(entry.updated_at))
        )
        if len(ended) >= MAX_ATTEMPTS_WITHOUT_PROGRESS:
            notes.append(
                f"{entry.describe()}; {len(ended)} resume runs ended without progress (last: run "
                f"{ended[0].run_id}): fix what its log says, then re-run the range by hand"
            )
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{key}@{entry.updated_at}#{len(ended)}",
                tags={
                    "dagster/asset_partition_range_start": entry.start,
                    "dagster/asset_partition_range_end": entry.end,
                    RESUME_TAG: key,
                },
            )
        )
    if requests:
        return requests
    return dg.SkipReason("; ".join(notes))
