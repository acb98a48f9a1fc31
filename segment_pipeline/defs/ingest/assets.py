"""Ingestion assets: Klaviyo segments (unpartitioned) and the daily segment series (daily partitions).

The asset bodies only decide *what* to load (partition window, lookback, segment ids) and report what
happened; fetching, planning and loading live in the client, the planner and the dlt sources.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg

from ... import warehouse as wh
from ...klaviyo import (
    Account,
    KlaviyoError,
    KlaviyoQuotaExhausted,
    KlaviyoServerError,
    ReportWindowError,
    check_reporting_window,
    earliest_reportable_day,
    plan_series_requests,
)
from ..partitions import daily_partitions
from ..resources import DUCKDB_POOL, KlaviyoResource, WarehouseResource

SEGMENTS_KEY = dg.AssetKey(["klaviyo", "segments"])
SERIES_KEY = dg.AssetKey(["klaviyo", "segment_series_daily"])
DEFINITIONS_KEY = dg.AssetKey(["klaviyo", "segment_definitions"])
ACCOUNTS_KEY = dg.AssetKey(["klaviyo", "accounts"])
GROUP = "klaviyo"


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
def explained_failures() -> Iterator[None]:
    """Turn client, planner and lock errors into a Dagster Failure that says what happened and what to do.

    Transient trouble (5xx after retries, a spent quota, a locked file) may be retried by a run retry
    policy; anything else (a bad key, a refused window, a malformed response) will fail the same way again.
    """
    # dlt costs half a second to import: loading the code (webserver, `definitions validate`) need not pay
    from dlt.pipeline.exceptions import PipelineStepFailed

    try:
        yield
    except dg.Failure:
        raise
    except (KlaviyoError, wh.WarehouseLockedError, PipelineStepFailed) as exc:
        cause = _klaviyo_cause(exc) or exc
        retryable = isinstance(cause, (KlaviyoServerError, KlaviyoQuotaExhausted, wh.WarehouseLockedError))
        raise dg.Failure(description=str(cause), allow_retries=retryable) from exc


def check_account_timezone(account: Account, configured: str) -> None:
    """The partitions are days in KLAVIYO_TIMEZONE (read when the code loads); they must be the account's days."""
    if account.timezone != configured:
        raise dg.Failure(
            description=(
                f"KLAVIYO_TIMEZONE is {configured!r} but Klaviyo account {account.id} reports in "
                f"{account.timezone!r}. Set KLAVIYO_TIMEZONE={account.timezone} and restart Dagster so the "
                "daily partitions are the account's days."
            ),
            allow_retries=False,
        )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            SEGMENTS_KEY,
            group_name=GROUP,
            kinds={"dlt", "duckdb"},
            description=(
                "Every Klaviyo segment with its whole definition (raw table klaviyo.segments, one row per "
                "segment). Refreshed in full on each run: renames, definition edits and deletions show."
            ),
        ),
        dg.AssetSpec(
            DEFINITIONS_KEY,
            group_name=GROUP,
            kinds={"dlt", "duckdb"},
            description=(
                "Every version of each segment definition ever seen (raw table klaviyo.segment_definitions), "
                "with when it was first seen; versions are only ever added."
            ),
        ),
        dg.AssetSpec(
            ACCOUNTS_KEY,
            group_name=GROUP,
            kinds={"dlt", "duckdb"},
            description="The Klaviyo account and its timezone (raw table klaviyo.accounts).",
        ),
    ],
    name="klaviyo_segments",
    pool=DUCKDB_POOL,
    # the three tables come from one listing and are always loaded together; selecting one is allowed
    can_subset=True,
    # not partitioned (each run refreshes every segment), but allowed into a single-run backfill range
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def segments(context: dg.AssetExecutionContext, klaviyo: KlaviyoResource, warehouse: WarehouseResource):
    """Segments, their definition history and the account, loaded together from one segments listing."""
    from ...sources import klaviyo_segments_source  # dlt: imported by runs, not by loading the code

    settings = warehouse.settings()
    loaded_at = dt.datetime.now(dt.UTC)
    with explained_failures(), klaviyo.client(warehouse) as client:
        account = client.get_account()
        check_account_timezone(account, daily_partitions.timezone)
        resources = client.list_segments()
        previous = wh.stored_segments(settings.warehouse_path, account.id)
        pipeline = warehouse.pipeline("klaviyo_segments")
        # a package left by a failed run would be loaded in place of this run's data: drop it
        pipeline.abort_packages()
        pipeline.run(klaviyo_segments_source(account, resources, previous, loaded_at))
        requests_sent = sum(client.stats.sent.values())
        versions = wh.definition_version_count(settings.warehouse_path, account.id)

    live_ids = {resource["id"] for resource in resources}
    known_ids = {row["id"] for row in previous if not row.get("is_deleted")}
    context.log.info("loaded %d segments of account %s", len(resources), account.id)
    segments_metadata = {
        "account_id": account.id,
        "segments": len(resources),
        "new_segments": len(live_ids - known_ids),
        "deleted_segments": len(known_ids - live_ids),
        "inactive_segments": sum(1 for r in resources if not (r.get("attributes") or {}).get("is_active", True)),
        "requests_sent": requests_sent,
        "dagster/row_count": len(resources),
    }
    results = [
        dg.MaterializeResult(asset_key=SEGMENTS_KEY, metadata=segments_metadata),
        dg.MaterializeResult(asset_key=DEFINITIONS_KEY, metadata={"dagster/row_count": versions}),
        dg.MaterializeResult(asset_key=ACCOUNTS_KEY, metadata={"account_id": account.id, "timezone": account.timezone}),
    ]
    for result in results:
        if result.asset_key in context.selected_asset_keys:
            yield result


def series_range(window_start: dt.date, window_last: dt.date, today: dt.date, lookback_days: int) -> dt.date:
    """First day to request: the partition start, or earlier by the lookback when the run reaches recent days.

    Klaviyo may still revise the last few days after they end, so a run that touches them re-pulls a
    trailing lookback within the same requests. A backfill of old days has nothing late to re-pull, so it
    keeps its minimal request count.
    """
    if lookback_days <= 0 or window_last < today - dt.timedelta(days=lookback_days + 1):
        return window_start
    return max(earliest_reportable_day(today), min(window_start, window_last - dt.timedelta(days=lookback_days)))


@dg.asset(
    key=SERIES_KEY,
    group_name=GROUP,
    pool=DUCKDB_POOL,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[SEGMENTS_KEY],
    kinds={"dlt", "duckdb"},
    description=(
        "Klaviyo's daily segment series (raw table klaviyo.segment_series_daily): one row per segment and "
        "account-local day with total_members, members_added, members_removed and net_members_changed. "
        "A backfill of any range runs as one run and sends the fewest report requests Klaviyo allows "
        "(ceil(segments/100) x ceil(days/60)); days more than a year back are refused before any request."
    ),
)
def segment_series_daily(context: dg.AssetExecutionContext, klaviyo: KlaviyoResource, warehouse: WarehouseResource):
    from ...sources import klaviyo_series_source  # dlt: imported by runs, not by loading the code

    settings = warehouse.settings()
    window = context.partition_time_window
    first_day = window.start.date()
    last_day = (window.end - dt.timedelta(days=1)).date()
    # the partitions' timezone, fixed when the code loaded, is the one whose days we are filling
    timezone = daily_partitions.timezone
    today = dt.datetime.now(ZoneInfo(timezone)).date()
    try:
        check_reporting_window(first_day, last_day, today)
    except ReportWindowError as exc:
        raise dg.Failure(description=f"{exc}. No request was sent.", allow_retries=False) from exc
    start_day = series_range(first_day, last_day, today, settings.lookback_days)

    loaded_at = dt.datetime.now(dt.UTC)
    rows_written = 0

    with explained_failures(), klaviyo.client(warehouse) as client:
        account = client.get_account()
        check_account_timezone(account, timezone)
        segment_ids = wh.live_segment_ids(settings.warehouse_path, account.id)
        if not segment_ids:
            raise dg.Failure(
                description="No segments are stored yet: materialize klaviyo/segments first (the daily job does).",
                allow_retries=False,
            )
        plan = plan_series_requests(segment_ids, start_day, last_day, today)
        client.budget.ensure_available(len(plan))
        context.log.info("%d segments, %s to %s: %d report requests", len(segment_ids), start_day, last_day, len(plan))

        def progress(request, table):
            nonlocal rows_written
            rows_written += table.num_rows
            context.log.info(
                "report %s..%s for %d segments: %d rows",
                request.window.start,
                request.window.end,
                len(request.segment_ids),
                table.num_rows,
            )

        pipeline = warehouse.pipeline("klaviyo_series")
        pipeline.abort_packages()
        pipeline.run(klaviyo_series_source(client, account, plan, loaded_at, on_response=progress))
        report_requests = client.stats.sent_for("reports")
        budget_left = client.budget.remaining()

    return dg.MaterializeResult(
        metadata={
            "rows_written": rows_written,
            "dagster/row_count": rows_written,
            "report_requests_sent": report_requests,
            "report_requests_planned": len(plan),
            "first_day": start_day.isoformat(),
            "last_day": last_day.isoformat(),
            "lookback_days_added": (first_day - start_day).days,
            "segments_covered": len(segment_ids),
            "report_requests_left_today": budget_left,
        }
    )
