"""`segment_growth_resume_sensor`: finishes series ranges that the report budget cut short.

A range that needs more report requests than the budget has left sends what fits, materializes the days it
completed and tags its run with what is left (`series_results.UNFINISHED_TAG` = the account, the range, when
it can resume). This sensor keeps no state of its own: on each tick it reads those run records, the runs it
started (tagged `RESUMES_TAG` = the run they resume) and the account's report ledger, and once the resume time
has passed and the budget has room it runs the series for the unfinished range, attempt after attempt, until a
run finishes it. Its skip messages say each range's progress.

On by default (it only ever resumes ranges someone started); turn it off in the UI (Automation). It needs the
daemon (`dagster dev` and `make dev` run one).
"""

import datetime as dt
import re
from collections.abc import Mapping

import dagster as dg

from ...ingest.access import KlaviyoAccess
from .series_results import KLAVIYO_ACCOUNT_TAG, RANGE_TAG, RESUME_AT_TAG, RESUMES_TAG, UNFINISHED_TAG

SENSOR_NAME = "segment_growth_resume_sensor"
# resume runs that ended without moving the range on (a crash, a bad response): stop after this many
MAX_ATTEMPTS_WITHOUT_PROGRESS = 3
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def build_resume_sensor(
    accounts: Mapping[str, KlaviyoAccess], series_keys: Mapping[str, dg.AssetKey], interval_seconds: int
) -> dg.SensorDefinition:
    """One sensor for every account: `series_keys` maps each account's name to its series asset."""

    @dg.sensor(
        name=SENSOR_NAME,
        asset_selection=dg.AssetSelection.assets(*series_keys.values()),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Finishes series ranges the Klaviyo report budget cut short: when an account's budget has room again "
            "it runs that account's series for the unfinished range, until the range is complete. Reads run "
            "records and tags and the report ledgers, never the warehouse."
        ),
    )
    def segment_growth_resume_sensor(context: dg.SensorEvaluationContext):
        requests, notes = [], []
        for name, access in accounts.items():
            request, note = _resume(context.instance, access, series_keys[name], dt.datetime.now(dt.UTC))
            if request is not None:
                requests.append(request)
            if note:
                notes.append(note)
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SkipReason("; ".join(notes) or "no unfinished series range")

    return segment_growth_resume_sensor


# a resume time further ahead than this was not written by a run (Klaviyo's quota window is a day)
_LONGEST_WAIT = dt.timedelta(days=2)
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _checked_tags(tags: Mapping[str, str], now: dt.datetime) -> tuple[str, str, dt.datetime, str | None]:
    """The range, resume time and Klaviyo account id a cut-short run was tagged with, each bounded.

    Raises:
        ValueError: The range or the account id is not what a run of this pipeline writes (the message says
            which); a resume time that cannot be read is taken as now.
    """
    first, _, last = tags.get(RANGE_TAG, "").partition("..")
    try:
        first_day, last_day = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    except ValueError:
        raise ValueError(f"its tag {RANGE_TAG}={tags.get(RANGE_TAG)!r} is not a range of days") from None
    if first_day > last_day:
        raise ValueError(f"its tag {RANGE_TAG}={tags.get(RANGE_TAG)!r} ends before it starts")
    # a resume time that cannot be read, has no offset or lies further ahead than any quota block is due
    # now: the report budget, checked before a run is asked for, still decides
    resume_at = _moment(tags.get(RESUME_AT_TAG))
    if resume_at is None or resume_at > now + _LONGEST_WAIT:
        resume_at = now
    account_id = tags.get(KLAVIYO_ACCOUNT_TAG)
    if account_id is not None and not _ACCOUNT_ID.match(account_id):
        raise ValueError(f"its tag {KLAVIYO_ACCOUNT_TAG}={account_id!r} is not a Klaviyo account id")
    return first_day.isoformat(), last_day.isoformat(), resume_at, account_id


def _resume(
    instance: dg.DagsterInstance, access: KlaviyoAccess, key: dg.AssetKey, now: dt.datetime
) -> tuple[dg.RunRequest | None, str | None]:
    """The run request that resumes the account's newest unfinished range, or why not now."""
    records = instance.get_run_records(dg.RunsFilter(tags={UNFINISHED_TAG: access.name}), limit=1)
    if not records:
        return None, None
    cut = records[0].dagster_run
    tags = cut.tags
    try:
        first, last, resume_at, account_id = _checked_tags(tags, now)
    except ValueError as exc:
        # run tags can be edited in the UI: a value this pipeline did not write is named, never a crash
        return None, (
            f"{access.label}: run {cut.run_id} is tagged as an unfinished range, but {exc}; re-run the range it "
            "loaded (its partitions show as failed), or remove its tag "
            f"{UNFINISHED_TAG} to stop this sensor looking at it"
        )
    described = f"{access.label} {first} to {last} (left unfinished by run {cut.run_id})"
    attempts = instance.get_runs(dg.RunsFilter(tags={RESUMES_TAG: cut.run_id}))
    if any(run.status == dg.DagsterRunStatus.SUCCESS for run in attempts):
        return None, None
    active = [run for run in attempts if run.status in _ACTIVE]
    if active:
        return None, f"{described}: run {active[0].run_id} is resuming it"
    if len(attempts) >= MAX_ATTEMPTS_WITHOUT_PROGRESS:
        return None, (
            f"{described}: {len(attempts)} resume runs ended without progress (last: run {attempts[0].run_id}); "
            "fix what its log says, then re-run the range"
        )
    if resume_at > now:
        return None, f"{described}: resumes at {resume_at.isoformat(timespec='seconds')}"
    if account_id and access.budget(account_id).remaining() <= 0:
        return None, f"{described}: waiting for room in the report budget"
    return (
        dg.RunRequest(
            run_key=f"{cut.run_id}#{len(attempts)}",
            asset_selection=[key],
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
                RESUMES_TAG: cut.run_id,
            },
        ),
        None,
    )


def _moment(text: str | None) -> dt.datetime | None:
    """A tag's time, with its offset (a time without one cannot be compared: read as unknown)."""
    try:
        moment = dt.datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
