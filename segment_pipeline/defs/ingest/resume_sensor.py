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
from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from ...config import DEFAULT_ACCOUNT_NAME
from ..account_names import resource_key
from ..resources import KlaviyoResource
from .pending import PendingRange, PendingRecordError, read_pending

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


def _resume_key(account_name: str, entry: PendingRange) -> str:
    """The run tag of a resume: the range, and the account when the deployment has several."""
    return entry.key if account_name == DEFAULT_ACCOUNT_NAME else f"{account_name}:{entry.key}"


def build_resume_sensor(jobs: Mapping[str, UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    """One sensor for every account: `jobs` maps each account's name to its job."""
    klaviyo_keys = {name: resource_key(name) for name in jobs}

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=list(jobs.values()),
        minimum_interval_seconds=_interval(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=set(klaviyo_keys.values()),
        description=(
            "Resumes series backfills the Klaviyo report budget cut short: when an account's budget has room "
            "again it runs that account's job for the unfinished range, until the range is complete. Reads the "
            "records PIPELINE_STATE_DIR/series_pending*.json, never the warehouse."
        ),
    )
    # direct invocation (tests) also passes the required resources as keyword arguments; they are read
    # from the context here, as the daemon's evaluation does
    def segment_growth_resume_sensor(context: dg.SensorEvaluationContext, **_resources):
        pending: dict[str, tuple[str, PendingRange]] = {}
        problems = []
        for name in jobs:
            klaviyo: KlaviyoResource = getattr(context.resources, klaviyo_keys[name])
            try:
                entries = read_pending(klaviyo.pending_path)
            except PendingRecordError as exc:
                # one account's damaged record must not stop the others' resumes
                problems.append(str(exc))
                continue
            pending.update({_resume_key(name, entry): (name, entry) for entry in entries.values()})
        return _resume_requests(context, jobs, klaviyo_keys, pending, problems)

    return segment_growth_resume_sensor


def _resume_requests(context, jobs, klaviyo_keys, pending, problems):
    context.update_cursor(
        json.dumps(
            {
                key: {
                    "requests_done": e.requests_done,
                    "requests_left": e.requests_left,
                    "resume_at": e.resume_at,
                    "expected_finish": e.expected_finish,
                }
                for key, (_, e) in pending.items()
            },
            sort_keys=True,
        )
    )
    if not pending:
        return dg.SkipReason("; ".join(problems) or "no unfinished series backfill")
    now = dt.datetime.now(dt.UTC)
    requests, notes = [], list(problems)
    for key, (name, entry) in sorted(pending.items()):
        active = context.instance.get_runs(dg.RunsFilter(tags={RESUME_TAG: key}, statuses=_ACTIVE), limit=1)
        if active:
            notes.append(f"{entry.describe()}; run {active[0].run_id} is resuming it")
            continue
        if dt.datetime.fromisoformat(entry.resume_at) > now:
            notes.append(entry.describe())
            continue
        klaviyo: KlaviyoResource = getattr(context.resources, klaviyo_keys[name])
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
                job_name=jobs[name].name,
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


def _single_account_sensor() -> dg.SensorDefinition:
    from ..schedules import segment_growth_job

    return build_resume_sensor({DEFAULT_ACCOUNT_NAME: segment_growth_job})


# the single account's (a deployment without an accounts file)
segment_growth_resume_sensor = _single_account_sensor()
