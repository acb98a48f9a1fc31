"""Loading one account's daily series for a range of its days: plan, fetch to staging, load. No Dagster here.

`load_series` asks Klaviyo only for the (segment, day) cells that are missing or not final yet, in the fewest
requests; keeps each paid response on disk before the next request is sent (`sources.series_staging`); loads
what came, and the responses earlier runs paid for but never loaded, through dlt; and returns a
`SeriesOutcome` saying what it did, day by day. A range bigger than the report budget sends what fits and
says in the outcome which days are complete and when the rest can resume.

Klaviyo is asked outside the warehouse lock, under the account's own fetch lock: accounts fetch at the same
time, and the DuckDB file is held only to read what is stored and to load what came.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import reconciliation as rc
from .. import warehouse as wh
from ..accounts import select_segments
from ..klaviyo import DayWindow, KlaviyoQuotaExhausted, check_reporting_window
from ..klaviyo.planner import (
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
from ..warehouse import Holder, Warehouse
from .access import IngestError, KlaviyoAccess

if TYPE_CHECKING:
    from ..sources.series_staging import SeriesStaging, SetAside, StagedLoad


@dataclass(frozen=True)
class Unfinished:
    """A range the report budget cut short: what is done, and when the rest can go on."""

    requests_total: int
    requests_done: int
    resume_at: dt.datetime
    expected_finish: dt.datetime
    why: str
    days_left: frozenset[dt.date]

    @property
    def requests_left(self) -> int:
        return self.requests_total - self.requests_done


@dataclass(frozen=True)
class SeriesOutcome:
    """What one run of the series did for one account and one range of its days (both ends included)."""

    account_id: str
    first_day: dt.date
    last_day: dt.date
    segments_tracked: int
    segments_live: int
    requests_planned: int
    requests_sent: int
    reconciliation_requests_reserved: int
    cells_in_range: int
    cells_final_already: int
    cells_requested_now: int
    cells_still_missing: int
    lookback_days_added: int
    lookback_cells_refreshed: int
    # days outside those, fetched before their segment had settled (new or processing), asked again
    unsettled_cells_refreshed: int
    segments_not_settled: int
    segments_deleted_meanwhile: int
    staged_files_from_earlier_runs: int
    staged_rows_from_earlier_runs: int
    # rows of staged responses older than the warehouse's fetch of the same cells, left out
    staged_rows_superseded: int
    requests_left_today: int
    # staged files that could not be loaded, moved to quarantine (each says why and what to do)
    set_aside: tuple[SetAside, ...] = ()
    # rows this run wrote, by day (lookback days before the range included), and rows stored for each day of
    # the range once the run had loaded
    rows_written_by_day: dict[dt.date, int] = field(default_factory=dict)
    rows_stored_by_day: dict[dt.date, int] = field(default_factory=dict)
    unfinished: Unfinished | None = None

    @property
    def days(self) -> list[dt.date]:
        return [self.first_day + dt.timedelta(days=n) for n in range((self.last_day - self.first_day).days + 1)]

    @property
    def complete_days(self) -> list[dt.date]:
        """The range's days that hold every tracked segment's numbers (all of them unless cut short)."""
        left = self.unfinished.days_left if self.unfinished else frozenset()
        return [day for day in self.days if day not in left]

    @property
    def rows_written(self) -> int:
        return sum(self.rows_written_by_day.values())


def expected_finish(
    resume_at: dt.datetime, requests_left: int, per_window: int, window_seconds: float, seconds_per_request: float
) -> dt.datetime:
    """When the last of `requests_left` requests should be done, sending `per_window` per budget window."""
    if requests_left <= 0:
        return resume_at
    full_windows = (requests_left - 1) // per_window
    in_last_window = requests_left - full_windows * per_window
    return resume_at + dt.timedelta(seconds=full_windows * window_seconds + in_last_window * seconds_per_request)


def load_staged(
    warehouse: Warehouse, staging: SeriesStaging, log: logging.Logger, holder: Holder | None = None, account: str = ""
) -> StagedLoad:
    """Load every sound staged response into the warehouse, then delete the files; returns what was loaded.

    Files that cannot be loaded are moved aside first, each named in a warning with what to do, and rows
    older than the warehouse's are left out (`series_staging.prepare_load`). The files are deleted only after
    dlt committed the load: a crash in between loads them again next time, which the merge on
    (account_id, segment_id, date) makes harmless.
    """
    # dlt: imported by runs, not by loading the code
    from dlt.pipeline.exceptions import PipelineStepFailed

    from ..sources.series import klaviyo_series_source
    from ..sources.series_staging import load_failure, prepare_load

    load = prepare_load(staging, warehouse.location)
    for aside in load.set_aside:
        log.warning(aside.describe())
    # made even with nothing to load: a damaged dlt working folder is then found before anything is paid for
    pipeline = warehouse.pipeline("klaviyo_series", account)
    if not load.files:
        staging.remove([])
        return load
    log.info("loading %d staged report responses into the warehouse", len(load.files))
    # a package left by a crashed load is dropped: its rows come again from the staged files
    pipeline.abort_packages()
    try:
        warehouse.load(pipeline, klaviyo_series_source(load.files, load.read, dt.datetime.now(dt.UTC)), holder)
    except PipelineStepFailed as exc:
        raise load_failure(exc, staging) or exc from exc
    staging.remove(load.files)
    if load.rows_superseded:
        log.warning(
            "%d rows of staged responses were left out: the warehouse holds a newer fetch of those cells",
            load.rows_superseded,
        )
    log.info("loaded %d rows from %d staged responses", load.rows, len(load.files))
    return load


def load_series(
    access: KlaviyoAccess,
    warehouse: Warehouse,
    first_day: dt.date,
    last_day: dt.date,
    *,
    holder: Holder,
    log: logging.Logger,
    refetch: bool = False,
    reconciling: bool = False,
    today: dt.date | None = None,
) -> SeriesOutcome:
    """The account's series for `first_day`..`last_day` (its own days): what is missing or not final.

    Args:
        access: The account.
        warehouse: Where the rows go.
        holder, log: Who holds the locks (for whoever waits) and where progress is told.
        refetch: Ask again for every day of the range, even days already final.
        reconciling: The run goes on to compare with Klaviyo's values report: when everything fits the budget,
            keep room for its requests (a range larger than the budget gets every request first).
        today: The account-local day now (default: the clock).

    Raises:
        ReportWindowError: The range is outside what Klaviyo reports on; nothing was sent.
        IngestError: Nothing can be fetched (no segments stored, none passes the filter, wrong timezone).
        KlaviyoError, WarehouseLockedError: as raised by the client and the warehouse; every response already
            received is loaded first.
    """
    from ..sources.series import fetch_series_table  # dlt: imported by runs, not by loading the code
    from ..sources.series_staging import SeriesStaging

    today = today or dt.datetime.now(access.account.zone).date()
    check_reporting_window(first_day, last_day, today)
    lookback = access.lookback_days

    with access.fetch_lock(holder), access.client(holder.log) as client:
        account = client.get_account()
        access.check_timezone(account)
        staging = SeriesStaging(
            warehouse.storage.series_staging_dir, account.id, warehouse.storage.series_quarantine_dir
        )
        with warehouse.lock(holder):
            # responses a crashed or stopped run paid for come first: they are never asked for again
            leftover = load_staged(warehouse, staging, log, holder, access.name)
            live = wh.live_segments(warehouse.location, account.id)
            # new or processing segments' numbers are not final yet; those fetched before they settled are
            # asked again, all their days, once they have
            facts = wh.segment_settling_facts(warehouse.location, account.id, earliest_reportable_day(today))
            settling = settling_by_segment(facts, access.account.timezone)
            stored = wh.stored_series_islands(
                warehouse.location,
                account.id,
                first_day - dt.timedelta(days=lookback),
                last_day,
                whole_history_of=to_repair(facts, settling, today),
            )
        segment_ids = _tracked(access, live)
        needed = days_to_fetch(
            segment_ids, first_day, last_day, stored, lookback, today, refetch=refetch, settling=settling
        )
        plan = plan_needed_requests(needed)
        partition = DayWindow(first_day, last_day)
        cells_in_range = len(segment_ids) * partition.days
        needed_in_range = {sid: days_in(days, partition) for sid, days in needed.items()}
        cells_needed = sum(day_count(days) for days in needed_in_range.values())
        lookback_window = DayWindow(first_day - dt.timedelta(days=lookback), first_day - dt.timedelta(days=1))
        needed_before = {sid: days_in(days, lookback_window) for sid, days in needed.items()} if lookback else {}
        lookback_cells = sum(day_count(days) for days in needed_before.values())
        reserved = (
            rc.request_count(
                len(segment_ids), access.settings.klaviyo.reconcile_days, access.settings.klaviyo.reconcile_segments
            )
            if reconciling
            else 0
        )
        budget_left = client.budget.remaining()
        fits = len(plan) if len(plan) + reserved <= budget_left else budget_left
        log.info(
            "%s: %d of %d segments tracked, %s to %s: %d of %d cells final already; %d report requests planned, "
            "%d fit the budget",
            access.label,
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
        sent, deleted_meanwhile, stopped_by, failure = _fetch(
            plan[:fits], client, account, staging, today, log, fetch_series_table
        )
        # whatever stopped the requests, the responses already paid for go into the warehouse now
        try:
            with warehouse.lock(holder):
                loaded = load_staged(warehouse, staging, log, holder, access.name)
                stored_by_day = wh.series_rows_by_day(warehouse.location, account.id, first_day, last_day)
        except Exception as load_error:
            if failure is None:
                raise
            # what stopped the requests is the news (e.g. a response that could not be kept); say both
            log.error(f"the staged responses were not loaded either: {load_error}")
            raise failure from load_error
        if failure is not None:
            raise failure
        budget = client.budget
        budget_left = budget.remaining()

    unsent = plan[len(sent) :]
    cells_missing = cells_in(unsent, needed_in_range)
    left = days_left(unsent, needed_in_range)
    unfinished = None
    if left:
        resume_at = stopped_by.retry_at if stopped_by is not None else budget.available_at(1)
        resume_at = _utc(resume_at or dt.datetime.now(dt.UTC))
        unfinished = Unfinished(
            requests_total=len(plan),
            requests_done=len(sent),
            resume_at=resume_at,
            expected_finish=expected_finish(
                resume_at, len(unsent), budget.daily_limit, budget.window_seconds, access.report_interval_seconds()
            ),
            why=str(stopped_by) if stopped_by is not None else "the report budget is spent",
            days_left=frozenset(left),
        )
    return SeriesOutcome(
        account_id=account.id,
        first_day=first_day,
        last_day=last_day,
        segments_tracked=len(segment_ids),
        segments_live=len(live),
        requests_planned=len(plan),
        requests_sent=client.stats.sent_for("reports"),
        reconciliation_requests_reserved=reserved,
        cells_in_range=cells_in_range,
        cells_final_already=cells_in_range - cells_needed,
        cells_requested_now=cells_needed - cells_missing,
        cells_still_missing=cells_missing,
        # not-final days before the range refreshed in the same requests (the late-data lookback)
        lookback_days_added=max(((first_day - d[0].start).days for d in needed_before.values() if d), default=0),
        lookback_cells_refreshed=lookback_cells,
        unsettled_cells_refreshed=sum(day_count(days) for days in needed.values()) - cells_needed - lookback_cells,
        segments_not_settled=sum(1 for sid in segment_ids if sid in settling and settling[sid].settled_on > today),
        segments_deleted_meanwhile=len(deleted_meanwhile),
        staged_files_from_earlier_runs=len(leftover.files),
        staged_rows_from_earlier_runs=leftover.rows,
        staged_rows_superseded=leftover.rows_superseded + loaded.rows_superseded,
        requests_left_today=budget_left,
        set_aside=tuple(leftover.set_aside + loaded.set_aside),
        rows_written_by_day=dict(leftover.rows_by_day + loaded.rows_by_day),
        rows_stored_by_day=stored_by_day,
        unfinished=unfinished,
    )


def _tracked(access: KlaviyoAccess, live: list[dict]) -> list[str]:
    if not live:
        raise IngestError(
            f"{access.label}: no segments are stored yet: materialize its segments first (its daily job does)."
        )
    segment_ids = sorted(row["id"] for row in select_segments(live, access.segment_filter))
    if not segment_ids:
        raise IngestError(
            f"{access.label}: none of its {len(live)} segments passes its segment filter "
            f"({access.where_configured}), so there is no series to fetch; no report request was sent. Loosen "
            "`segments:` there (or write `segments: all`)."
        )
    return segment_ids


def _fetch(plan, client, account, staging, today, log, fetch_series_table):
    """Send the planned requests in order, staging each response before the next; stop at a spent quota.

    Returns (requests sent, segments deleted meanwhile, the quota error that stopped it or None, the error
    that broke it or None): the caller loads what came before raising anything.
    """
    sent: list = []
    deleted: set[str] = set()
    try:
        for request in plan:
            # stamped with the day the run started: a run that passes midnight errs towards "not final"
            response = fetch_series_table(client, account, request, fetched_on=today)
            if response.deleted_segment_ids:
                deleted.update(response.deleted_segment_ids)
                log.warning(
                    "segments deleted in Klaviyo since the listing, left out: %s",
                    ", ".join(response.deleted_segment_ids),
                )
            if response.table.num_rows:
                staging.put(response.table, request)
            sent.append(request)
            log.info(
                "report %d/%d: %s..%s for %d segments, %d rows kept",
                len(sent),
                len(plan),
                request.window.start,
                request.window.end,
                len(request.segment_ids),
                response.table.num_rows,
            )
    except KlaviyoQuotaExhausted as exc:
        return sent, deleted, exc, None
    except Exception as exc:  # noqa: BLE001 - loaded first, then raised as it was
        return sent, deleted, None, exc
    return sent, deleted, None, None


def _utc(moment: float | dt.datetime) -> dt.datetime:
    if isinstance(moment, dt.datetime):
        return moment.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(moment, dt.UTC)
