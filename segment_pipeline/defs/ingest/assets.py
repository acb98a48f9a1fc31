"""Ingestion assets of one Klaviyo account: its segments (unpartitioned) and its daily series (its own days).

`build_ingest_assets` makes them for an account (the code location calls it once per account of the
accounts file, see `defs/accounts.py`); `segments` and `segment_series_daily` are the single account's, with
the keys they always had. The bodies only decide *what* to load (partition window, lookback, tracked segment
ids) and report what happened; fetching, planning and loading live in the client, the planner and the dlt
sources.

Klaviyo is asked outside the warehouse lock, under the account's own fetch lock: accounts fetch at the same
time, and the DuckDB file is held only to read what is stored and to load what came.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from ... import reconciliation as rc
from ... import warehouse as wh
from ...accounts import select_segments
from ...config import DEFAULT_ACCOUNT_NAME
from ...klaviyo import (
    Account,
    DayWindow,
    KlaviyoError,
    KlaviyoQuotaExhausted,
    KlaviyoServerError,
    ReportWindowError,
    check_reporting_window,
)
from ...klaviyo.listing import segments_without_tag_data
from ...klaviyo.planner import (
    cells_in,
    day_count,
    days_in,
    days_left,
    days_to_fetch,
    earliest_reportable_day,
    plan_needed_requests,
    settling_by_segment,
    to_repair,
)
from ...state_files import StateFileError
from ..account_names import asset_key, group_name, resource_key
from ..partitions import daily_partitions
from ..resources import KlaviyoResource, WarehouseResource
from .pending import PendingRange, previous_total, read_pending, record_finished, record_unfinished
from .tags import list_segments_and_tags

if TYPE_CHECKING:
    from ...sources.series_staging import SeriesStaging, StagedLoad


@dataclass(frozen=True)
class IngestKeys:
    """The asset keys of one account's ingestion (see `account_names.asset_key`)."""

    segments: dg.AssetKey
    series: dg.AssetKey
    definitions: dg.AssetKey
    accounts: dg.AssetKey
    segment_tags: dg.AssetKey

    @classmethod
    def of(cls, account_name: str) -> "IngestKeys":
        return cls(
            segments=asset_key(account_name, "segments"),
            series=asset_key(account_name, "segment_series_daily"),
            definitions=asset_key(account_name, "segment_definitions"),
            accounts=asset_key(account_name, "accounts"),
            segment_tags=asset_key(account_name, "segment_tags"),
        )


# the single account's keys (a deployment without an accounts file), as they always were
_DEFAULT_KEYS = IngestKeys.of(DEFAULT_ACCOUNT_NAME)
SEGMENTS_KEY = _DEFAULT_KEYS.segments
SERIES_KEY = _DEFAULT_KEYS.series
DEFINITIONS_KEY = _DEFAULT_KEYS.definitions
ACCOUNTS_KEY = _DEFAULT_KEYS.accounts
SEGMENT_TAGS_KEY = _DEFAULT_KEYS.segment_tags


def _klaviyo_cause(exc: BaseException) -> BaseException | None:
    """The Klaviyo (or warehouse) error behind a dlt step failure, if there is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (KlaviyoError, wh.WarehouseLockedError)):
            return exc
        if wh.is_lock_error(exc):
            # the file was taken between our read and dlt's load: say so plainly, not as a dlt stack
            return wh.WarehouseLockedError(
                f"the warehouse is locked by {wh.lock_holder(exc)}: close that DuckDB session and run again; "
                "this run's rows were not loaded"
            )
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def explained_failures(account_label: str | None = None) -> Iterator[None]:
    """Turn client, planner and lock errors into a Dagster Failure that says what happened and what to do.

    Transient trouble (5xx after retries, a spent quota, a locked file) may be retried by a run retry
    policy; anything else (a bad key, a refused window, a malformed response) will fail the same way again.
    `account_label` (e.g. "account 'brand_a'") starts the message when the deployment has several accounts.
    """
    # dlt costs half a second to import: loading the code (webserver, `definitions validate`) need not pay
    from dlt.pipeline.exceptions import PipelineStepFailed

    try:
        yield
    except dg.Failure:
        raise
    except (KlaviyoError, wh.WarehouseLockedError, StateFileError, PipelineStepFailed) as exc:
        cause = _klaviyo_cause(exc) or exc
        retryable = isinstance(cause, (KlaviyoServerError, KlaviyoQuotaExhausted, wh.WarehouseLockedError))
        description = f"{account_label}: {cause}" if account_label else str(cause)
        raise dg.Failure(description=description, allow_retries=retryable) from exc


def account_label(klaviyo: KlaviyoResource) -> str | None:
    """How failures name the account: by its short name when the accounts file has several; else not at all."""
    return f"account {klaviyo.account_name!r}" if klaviyo.accounts_file else None


def check_account_timezone(account: Account, configured: str, klaviyo: "KlaviyoResource | None" = None) -> None:
    """The partitions are days in the configured timezone (read when the code loads); they must be the account's."""
    if account.timezone == configured:
        return
    if klaviyo is not None and klaviyo.accounts_file:
        raise dg.Failure(
            description=(
                f"account {klaviyo.account_name!r}: the accounts file {klaviyo.accounts_file} gives it timezone "
                f"{configured!r} but Klaviyo account {account.id} reports in {account.timezone!r}. Write "
                f"`timezone: {account.timezone}` for {klaviyo.account_name} there and reload the code location so "
                "its daily partitions are the account's days. No request for its series was sent."
            ),
            allow_retries=False,
        )
    raise dg.Failure(
        description=(
            f"KLAVIYO_TIMEZONE is {configured!r} but Klaviyo account {account.id} reports in "
            f"{account.timezone!r}. Set KLAVIYO_TIMEZONE={account.timezone} and restart Dagster so the "
            "daily partitions are the account's days."
        ),
        allow_retries=False,
    )


def _segment_specs(keys: IngestKeys, group: str, label: str) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            keys.segments,
            group_name=group,
            kinds={"dlt", "duckdb"},
            description=(
                f"Every Klaviyo segment of {label} with its whole definition (raw table klaviyo.segments, one row "
                "per segment). Refreshed in full on each run: renames, definition edits and deletions show."
            ),
        ),
        dg.AssetSpec(
            keys.definitions,
            group_name=group,
            kinds={"dlt", "duckdb"},
            description=(
                f"Every version of each segment definition of {label} ever seen (raw table "
                "klaviyo.segment_definitions), with when it was first seen; versions are only ever added."
            ),
        ),
        dg.AssetSpec(
            keys.accounts,
            group_name=group,
            kinds={"dlt", "duckdb"},
            description=f"The Klaviyo account of {label}, its timezone and short name (raw table klaviyo.accounts).",
        ),
        dg.AssetSpec(
            keys.segment_tags,
            group_name=group,
            kinds={"dlt", "duckdb"},
            description=(
                f"Each segment's Klaviyo tags, {label} (raw table klaviyo.segment_tags, one row per segment). Needs "
                "the tags:read scope; see KLAVIYO_TAGS for what happens without it."
            ),
        ),
    ]


def check_one_name_per_account(klaviyo: KlaviyoResource, account: Account, stored_names: list[str]) -> None:
    """Two accounts of the file with keys of the same Klaviyo account would load its rows under two names."""
    clashing = sorted(set(stored_names) & set(klaviyo.other_account_names))
    if clashing:
        raise dg.Failure(
            description=(
                f"account {klaviyo.account_name!r}: its key belongs to Klaviyo account {account.id}, which is already "
                f"loaded as account {clashing[0]!r} of {klaviyo.accounts_file}. Keep one entry for that Klaviyo "
                "account in the file (each entry needs a key of a different account); nothing was loaded."
            ),
            allow_retries=False,
        )


class SegmentsConfig(dg.Config):
    """Run options of the segments step (Launchpad: `ops: {klaviyo_segments: {config: ...}}`)."""

    confirm_deletions: bool = Field(
        default=False,
        description=(
            "Mark segments deleted even when the listing lacks more than half of those stored as live. Off by "
            "default: such a listing is more often cut short than real, and its deletions are held back."
        ),
    )


def materialize_segments(
    context: dg.AssetExecutionContext,
    klaviyo: KlaviyoResource,
    warehouse: WarehouseResource,
    keys: IngestKeys,
    timezone: str,
    config: SegmentsConfig | None = None,
):
    """Segments, their definition history and the account, loaded together from one complete segments listing."""
    # dlt: imported by runs, not by loading the code
    from ...sources.segments import klaviyo_segments_source, plan_deletions

    settings = warehouse.settings
    loaded_at = dt.datetime.now(dt.UTC)
    with explained_failures(account_label(klaviyo)), klaviyo.fetch_lock(context), klaviyo.client(context.log) as client:
        account = client.get_account()
        check_account_timezone(account, timezone, klaviyo)
        # Klaviyo answers outside the warehouse lock: other accounts load meanwhile
        resources, tag_names = list_segments_and_tags(client, context.log, klaviyo.tags)
        requests_sent = sum(client.stats.sent.values())
        with warehouse.lock(context):
            check_one_name_per_account(klaviyo, account, wh.account_names_of(settings.warehouse_path, account.id))
            previous = wh.stored_segments(settings.warehouse_path, account.id)
            deletions = plan_deletions(
                previous, {r["id"] for r in resources}, confirmed=bool(config and config.confirm_deletions)
            )
            if deletions.held_back:
                context.log.warning("%s: %s", klaviyo.account_name, deletions.warning())
            pipeline = warehouse.pipeline("klaviyo_segments")
            # a package left by a failed run would be loaded in place of this run's data: drop it
            pipeline.abort_packages()
            pipeline.run(
                klaviyo_segments_source(
                    account,
                    resources,
                    deletions.comparable(previous),
                    loaded_at,
                    tag_names,
                    account_name=klaviyo.account_name,
                )
            )
            versions = wh.definition_version_count(settings.warehouse_path, account.id)

    live_ids = {resource["id"] for resource in resources}
    known_ids = {row["id"] for row in previous if not row.get("is_deleted")}
    context.log.info("loaded %d segments of account %s (%s)", len(resources), klaviyo.account_name, account.id)
    segments_metadata = {
        "account": klaviyo.account_name,
        "account_id": account.id,
        "segments": len(resources),
        "new_segments": len(live_ids - known_ids),
        "deleted_segments": deletions.marked,
        "deletions_held_back": len(deletions.gone) if deletions.held_back else 0,
        "inactive_segments": sum(1 for r in resources if not (r.get("attributes") or {}).get("is_active", True)),
        "requests_sent": requests_sent,
        "tags_loaded": tag_names is not None,
        "tags": len(tag_names or {}),
        # listed without their tags' `data`: their stored tags are kept
        "segments_without_tag_data": segments_without_tag_data(resources) if tag_names is not None else 0,
        "dagster/row_count": len(resources),
    }
    results = [
        dg.MaterializeResult(asset_key=keys.segments, metadata=segments_metadata),
        dg.MaterializeResult(asset_key=keys.definitions, metadata={"dagster/row_count": versions}),
        dg.MaterializeResult(
            asset_key=keys.accounts,
            metadata={"account": klaviyo.account_name, "account_id": account.id, "timezone": account.timezone},
        ),
        dg.MaterializeResult(
            asset_key=keys.segment_tags,
            metadata={"tags_loaded": tag_names is not None, "tags": len(tag_names or {})},
        ),
    ]
    for result in results:
        if result.asset_key in context.selected_asset_keys:
            yield result


class SeriesConfig(dg.Config):
    """Run options of the series asset (Launchpad: `ops: {klaviyo__segment_series_daily: {config: ...}}`)."""

    refetch: bool = Field(
        default=False,
        description=(
            "Ask Klaviyo again for every day of the selected partitions, even days already final. Off by "
            "default: a run asks only for the (segment, day) cells that are missing or not final yet."
        ),
    )


def expected_finish(
    resume_at: dt.datetime, requests_left: int, per_window: int, window_seconds: float, seconds_per_request: float
) -> dt.datetime:
    """When the last of `requests_left` requests should be done, sending `per_window` per budget window."""
    if requests_left <= 0:
        return resume_at
    full_windows = (requests_left - 1) // per_window
    in_last_window = requests_left - full_windows * per_window
    return resume_at + dt.timedelta(seconds=full_windows * window_seconds + in_last_window * seconds_per_request)


def _utc(moment: float | dt.datetime) -> dt.datetime:
    if isinstance(moment, dt.datetime):
        return moment.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(moment, dt.UTC)


def _iso(moment: dt.datetime) -> str:
    # rounded up to the second: a "resumes at T" read back must never be earlier than the real moment
    moment = moment.astimezone(dt.UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
    return moment.isoformat(timespec="seconds")


def load_staged(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, staging: "SeriesStaging"
) -> "StagedLoad":
    """Load every sound staged response into the warehouse, then delete the files; returns what was loaded.

    Files that cannot be loaded are moved aside first, each named in a warning with what to do, and rows
    older than the warehouse's are left out (`series_staging.prepare_load`). The files are deleted only after
    dlt committed the load: a crash in between loads them again next time, which the merge on
    (account_id, segment_id, date) makes harmless.
    """
    # dlt: imported by runs, not by loading the code
    from dlt.pipeline.exceptions import PipelineStepFailed

    from ...sources.series import klaviyo_series_source
    from ...sources.series_staging import load_failure, prepare_load

    load = prepare_load(staging, warehouse.settings.warehouse_path)
    for aside in load.set_aside:
        context.log.warning(aside.describe())
    # made even with nothing to load: a damaged dlt working folder is then found before anything is paid for
    pipeline = warehouse.pipeline("klaviyo_series")
    if not load.files:
        staging.remove([])
        return load
    context.log.info("loading %d staged report responses into the warehouse", len(load.files))
    # a package left by a crashed load is dropped: its rows come again from the staged files
    pipeline.abort_packages()
    try:
        pipeline.run(klaviyo_series_source(load.files, load.read, dt.datetime.now(dt.UTC)))
    except PipelineStepFailed as exc:
        raise load_failure(exc, staging) or exc from exc
    staging.remove(load.files)
    if load.rows_superseded:
        context.log.warning(
            "%d rows of staged responses were left out: the warehouse holds a newer fetch of those cells",
            load.rows_superseded,
        )
    context.log.info("loaded %d rows from %d staged responses", load.rows, len(load.files))
    return load


def set_aside_note(set_aside: list) -> str:
    """A sentence for a run's message naming the staged files it moved aside (their log lines say why)."""
    if not set_aside:
        return ""
    moved = ", ".join(str(aside.moved_to) for aside in set_aside)
    return f" Staged responses that could not be loaded were moved aside (the log says why and what to do): {moved}."


def materialize_series(
    context: dg.AssetExecutionContext,
    config: SeriesConfig,
    klaviyo: KlaviyoResource,
    warehouse: WarehouseResource,
    keys: IngestKeys,
    timezone: str,
):
    """The account's series for the run's days: what is missing or not final, in the fewest requests."""
    # dlt: imported by runs, not by loading the code
    from ...sources.series import fetch_series_table
    from ...sources.series_staging import SeriesStaging

    settings = warehouse.settings
    window = context.partition_time_window
    first_day = window.start.date()
    last_day = (window.end - dt.timedelta(days=1)).date()
    # `timezone` is the partitions' (fixed when the code loaded): the days we are filling
    today = dt.datetime.now(ZoneInfo(timezone)).date()
    try:
        check_reporting_window(first_day, last_day, today)
    except ReportWindowError as exc:
        raise dg.Failure(description=f"{exc}. No request was sent.", allow_retries=False) from exc
    lookback = klaviyo.lookback
    label = account_label(klaviyo)

    with explained_failures(label), klaviyo.fetch_lock(context), klaviyo.client(context.log) as client:
        # a record of unfinished backfills that cannot be read would fail the run after it paid: find it now
        read_pending(klaviyo.pending_path)
        account = client.get_account()
        check_account_timezone(account, timezone, klaviyo)
        staging = SeriesStaging(settings.series_staging_dir, account.id, settings.series_quarantine_dir)
        with warehouse.lock(context):
            # responses a crashed or stopped run paid for come first: they are never asked for again
            leftover = load_staged(context, warehouse, staging)
            live = wh.live_segments(settings.warehouse_path, account.id)
            # new or processing segments' numbers are not final yet; those fetched before they settled are
            # asked again, all their days, once they have
            facts = wh.segment_settling_facts(settings.warehouse_path, account.id, earliest_reportable_day(today))
            settling = settling_by_segment(facts, timezone)
            stored = wh.stored_series_islands(
                settings.warehouse_path,
                account.id,
                first_day - dt.timedelta(days=lookback),
                last_day,
                whole_history_of=to_repair(facts, settling, today),
            )
        if not live:
            raise dg.Failure(
                description=(
                    f"{label + ': ' if label else ''}No segments are stored yet: materialize "
                    f"{keys.segments.to_user_string()} first (the daily job does)."
                ),
                allow_retries=False,
            )
        segment_ids = sorted(row["id"] for row in select_segments(live, klaviyo.segment_filter))
        if not segment_ids:
            raise dg.Failure(
                description=(
                    f"{label + ': ' if label else ''}none of the account's {len(live)} segments passes its segment "
                    f"filter ({klaviyo.where_configured}), so there is no series to fetch; no report request was sent. "
                    "Loosen `segments:` there (or write `segments: all`)."
                ),
                allow_retries=False,
            )
        needed = days_to_fetch(
            segment_ids, first_day, last_day, stored, lookback, today, refetch=config.refetch, settling=settling
        )
        plan = plan_needed_requests(needed)
        partition = DayWindow(first_day, last_day)
        cells_in_range = len(segment_ids) * partition.days
        needed_in_range = {sid: days_in(days, partition) for sid, days in needed.items()}
        cells_needed = sum(day_count(days) for days in needed_in_range.values())
        lookback_window = DayWindow(first_day - dt.timedelta(days=lookback), first_day - dt.timedelta(days=1))
        needed_before = {sid: days_in(days, lookback_window) for sid, days in needed.items()} if lookback else {}
        lookback_cells = sum(day_count(days) for days in needed_before.values())
        # the reconciliation check after this asset spends from the same budget: when the run includes it
        # and everything fits, keep room for it; a range larger than the budget gets every request first
        check = dg.AssetCheckKey(keys.series, rc.CHECK_NAME)
        selected = context.run.asset_check_selection  # None: every check of the job
        in_job = check in context.job_def.asset_layer.asset_graph.asset_check_keys
        reconciling = in_job and (selected is None or check in selected)
        reconciliation_requests = rc.request_count(len(segment_ids), klaviyo.reconcile_days) if reconciling else 0

        budget_left = client.budget.remaining()
        fits = len(plan) if len(plan) + reconciliation_requests <= budget_left else budget_left
        context.log.info(
            "%s: %d of %d segments tracked, %s to %s: %d of %d cells final already; %d report requests planned, "
            "%d fit the budget",
            klaviyo.account_name,
            len(segment_ids),
            len(live),
            first_day,
            last_day,
            cells_in_range - cells_needed,
            cells_in_range,
            len(plan),
            min(fits, len(plan)),
        )
        if fits:
            # a full disk or a read-only folder is found before anything is paid for
            staging.check_room(sum(len(r.segment_ids) * r.window.days for r in plan[:fits]))
        sent: list = []
        deleted_meanwhile: set[str] = set()
        stopped_by: KlaviyoQuotaExhausted | None = None
        failure: BaseException | None = None
        try:
            for request in plan[:fits]:
                # stamped with the day the run started: a run that passes midnight errs towards "not final"
                response = fetch_series_table(client, account, request, fetched_on=today)
                table = response.table
                if response.deleted_segment_ids:
                    deleted_meanwhile.update(response.deleted_segment_ids)
                    context.log.warning(
                        "segments deleted in Klaviyo since the listing, left out: %s",
                        ", ".join(response.deleted_segment_ids),
                    )
                if table.num_rows:
                    staging.put(table, request)
                sent.append(request)
                context.log.info(
                    "report %d/%d: %s..%s for %d segments, %d rows kept",
                    len(sent),
                    len(plan),
                    request.window.start,
                    request.window.end,
                    len(request.segment_ids),
                    table.num_rows,
                )
        except KlaviyoQuotaExhausted as exc:
            stopped_by = exc
        except Exception as exc:  # noqa: BLE001 - loaded below, then raised as it was
            failure = exc
        # whatever stopped the requests, the responses already paid for go into the warehouse now
        try:
            with warehouse.lock(context):
                loaded = load_staged(context, warehouse, staging)
        except Exception as load_error:
            if failure is None:
                raise
            # what stopped the requests is the news (e.g. a response that could not be kept); say both
            context.log.error(f"the staged responses were not loaded either: {load_error}")
            raise failure from load_error
        if failure is not None:
            raise failure
        report_requests = client.stats.sent_for("reports")
        budget = client.budget
        budget_left = budget.remaining()

    unsent = plan[len(sent) :]
    left_days = days_left(unsent, needed_in_range)
    cells_missing = cells_in(unsent, needed_in_range)
    set_aside = leftover.set_aside + loaded.set_aside
    metadata = {
        "rows_written": loaded.rows,
        "dagster/row_count": loaded.rows,
        "report_requests_sent": report_requests,
        "report_requests_planned": len(plan),
        "reconciliation_requests_planned": reconciliation_requests,
        "cells_final_already": cells_in_range - cells_needed,
        "cells_requested_now": cells_needed - cells_missing,
        "cells_still_missing": cells_missing,
        "refetch": config.refetch,
        "first_day": first_day.isoformat(),
        "last_day": last_day.isoformat(),
        # not-final days before the range refreshed in the same requests (the late-data lookback)
        "lookback_days_added": max(((first_day - d[0].start).days for d in needed_before.values() if d), default=0),
        "lookback_cells_refreshed": lookback_cells,
        # days outside those, fetched before their segment had settled (new or processing), asked again
        "unsettled_cells_refreshed": sum(day_count(days) for days in needed.values()) - cells_needed - lookback_cells,
        "segments_not_settled": sum(1 for sid in segment_ids if sid in settling and settling[sid].settled_on > today),
        "account": klaviyo.account_name,
        "segments_covered": len(segment_ids),
        "segments_not_tracked": len(live) - len(segment_ids),
        "segments_deleted_meanwhile": len(deleted_meanwhile),
        "staged_responses_from_earlier_runs": len(leftover.files),
        "staged_rows_from_earlier_runs": leftover.rows,
        # rows of staged responses older than the warehouse's fetch of the same cells, left out
        "staged_rows_superseded": leftover.rows_superseded + loaded.rows_superseded,
        "staged_responses_set_aside": len(set_aside),
        "staged_responses_set_aside_files": dg.MetadataValue.json([aside.as_metadata() for aside in set_aside]),
        "report_requests_left_today": budget_left,
    }
    pending_path = klaviyo.pending_path
    # requests left only for not-final days before the range do not make any of its days incomplete
    if not left_days:
        finished = record_finished(pending_path, first_day, last_day)
        if finished:
            context.log.info("backfill complete: %s", ", ".join(finished))
        return dg.MaterializeResult(metadata=metadata)

    # cut short by the budget: keep what came, show the days that are complete, and leave the rest to resume
    total = max(previous_total(pending_path, first_day, last_day) or 0, len(plan))
    done = total - len(unsent)
    resume_at = (
        _utc(stopped_by.retry_at) if stopped_by is not None else _utc(budget.available_at(1) or dt.datetime.now(dt.UTC))
    )
    finish = expected_finish(
        resume_at, len(unsent), budget.daily_limit, budget.window_seconds, klaviyo.report_interval_seconds()
    )
    entry = PendingRange(
        account_id=account.id,
        account_name=klaviyo.account_name,
        start=first_day.isoformat(),
        end=last_day.isoformat(),
        requests_total=total,
        requests_done=done,
        resume_at=_iso(resume_at),
        expected_finish=_iso(finish),
        updated_at=_iso(dt.datetime.now(dt.UTC)),
        run_id=context.run_id,
    )
    record_unfinished(pending_path, entry)
    progress = {
        "backfill_requests_done": done,
        "backfill_requests_left": len(unsent),
        "backfill_resumes_at": entry.resume_at,
        "backfill_expected_finish": entry.expected_finish,
    }
    complete = [key for key in context.partition_keys if dt.date.fromisoformat(key) not in left_days]
    for key in complete:
        context.log_event(
            dg.AssetMaterialization(asset_key=keys.series, partition=key, metadata={**metadata, **progress})
        )
    why = str(stopped_by) if stopped_by is not None else "the report budget is spent"
    raise dg.Failure(
        description=(
            f"{label + ': ' if label else ''}{done} of {total} requests done; the rest resumes at "
            f"{entry.resume_at} ({why}). Every response "
            f"received is loaded: {len(complete)} of {len(context.partition_keys)} days are complete and "
            f"materialized, the other {len(context.partition_keys) - len(complete)} show as failed until "
            "segment_growth_resume_sensor (or a re-run of the same range) finishes them, expected at "
            f"{entry.expected_finish}.{set_aside_note(set_aside)}"
        ),
        metadata={**metadata, **progress},
        allow_retries=False,
    )


def build_ingest_assets(
    account_name: str, partitions: dg.DailyPartitionsDefinition
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """One account's `segments` multi-asset and its `segment_series_daily` asset, partitioned by its own days.

    They read the account's Klaviyo resource (`account_names.resource_key`) and the shared warehouse.
    """
    keys = IngestKeys.of(account_name)
    group = group_name(account_name)
    klaviyo_key = resource_key(account_name)
    label = "the account" if account_name == DEFAULT_ACCOUNT_NAME else f"account {account_name}"
    timezone = partitions.timezone

    @dg.multi_asset(
        specs=_segment_specs(keys, group, label),
        name=f"{'_'.join(keys.segments.path[:-1])}_segments",
        # the four tables come from one listing and are always loaded together; selecting one is allowed
        can_subset=True,
        # not partitioned (each run refreshes every segment), but allowed into a single-run backfill range
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={klaviyo_key, "warehouse"},
    )
    def account_segments(context: dg.AssetExecutionContext, config: SegmentsConfig):
        resources = context.resources
        yield from materialize_segments(
            context, getattr(resources, klaviyo_key), resources.warehouse, keys, timezone, config
        )

    @dg.asset(
        key=keys.series,
        group_name=group,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[keys.segments],
        kinds={"dlt", "duckdb"},
        required_resource_keys={klaviyo_key, "warehouse"},
        description=(
            f"Klaviyo's daily segment series of {label} (raw table klaviyo.segment_series_daily), partitioned by "
            f"days in {timezone}: one row per tracked segment and account-local day with total_members, "
            "members_added, members_removed and net_members_changed, fetched_on, the day the numbers were "
            "fetched, and fetched_at, the moment (the newest fetch of a cell wins). A run asks only for the "
            "(segment, day) cells that are missing or not final yet (fetched within the late-data lookback, or "
            "before a new or processing segment settled), in the fewest requests; each response is kept on disk "
            "before the "
            "next request is sent. A range larger than the report budget sends what fits, materializes the days "
            "it completed, and segment_growth_resume_sensor finishes it."
        ),
    )
    def account_series(context: dg.AssetExecutionContext, config: SeriesConfig):
        resources = context.resources
        return materialize_series(context, config, getattr(resources, klaviyo_key), resources.warehouse, keys, timezone)

    return account_segments, account_series


# the single account's (a deployment without an accounts file); tests and scripts import these
segments, segment_series_daily = build_ingest_assets(DEFAULT_ACCOUNT_NAME, daily_partitions)
