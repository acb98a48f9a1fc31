"""What a series run shows in Dagster: one materialization per day with that day's numbers, or a Failure.

A range cut short by the report budget materializes the days it completed, tags its run with what is left
(the resume sensor reads those tags, see `resume_sensor.py`) and fails saying when the rest resumes.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ...ingest.access import KlaviyoAccess
from ...ingest.series import SeriesOutcome
from ..account_names import ACCOUNT_TAG

# run tags of a range the budget cut short: the resume sensor finds such runs by UNFINISHED_TAG=<account>
UNFINISHED_TAG = "segment_pipeline/unfinished"
RANGE_TAG = "segment_pipeline/range"
RESUME_AT_TAG = "segment_pipeline/resume_at"
KLAVIYO_ACCOUNT_TAG = "segment_pipeline/klaviyo_account_id"
# on runs the resume sensor starts: the run they resume
RESUMES_TAG = "segment_pipeline/resumes"


def iso(moment: dt.datetime) -> str:
    """UTC to the second, rounded up: a "resumes at T" read back must never be earlier than the real moment."""
    moment = moment.astimezone(dt.UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
    return moment.isoformat(timespec="seconds")


def run_metadata(outcome: SeriesOutcome) -> dict:
    """What the whole run did (the same on each of its days; every name starts with `run_`)."""
    return {
        "run_first_day": outcome.first_day.isoformat(),
        "run_last_day": outcome.last_day.isoformat(),
        "run_report_requests_sent": outcome.requests_sent,
        "run_report_requests_planned": outcome.requests_planned,
        "run_reconciliation_requests_reserved": outcome.reconciliation_requests_reserved,
        "run_cells_final_already": outcome.cells_final_already,
        "run_cells_requested_now": outcome.cells_requested_now,
        "run_cells_still_missing": outcome.cells_still_missing,
        "run_lookback_days_added": outcome.lookback_days_added,
        "run_lookback_cells_refreshed": outcome.lookback_cells_refreshed,
        "run_unsettled_cells_refreshed": outcome.unsettled_cells_refreshed,
        "run_segments_not_settled": outcome.segments_not_settled,
        "run_segments_deleted_meanwhile": outcome.segments_deleted_meanwhile,
        "run_staged_responses_from_earlier_runs": outcome.staged_files_from_earlier_runs,
        "run_staged_rows_from_earlier_runs": outcome.staged_rows_from_earlier_runs,
        "run_staged_rows_superseded": outcome.staged_rows_superseded,
        "run_staged_responses_set_aside": len(outcome.set_aside),
        "run_staged_responses_set_aside_files": dg.MetadataValue.json(
            [aside.as_metadata() for aside in outcome.set_aside]
        ),
        "run_report_requests_left_today": outcome.requests_left_today,
    }


def day_metadata(access: KlaviyoAccess, outcome: SeriesOutcome, day: dt.date) -> dict:
    """One day's materialization: the rows the warehouse holds for it, and what this run wrote."""
    return {
        "dagster/row_count": outcome.rows_stored_by_day.get(day, 0),
        "rows_written": outcome.rows_written_by_day.get(day, 0),
        "segments_tracked": outcome.segments_tracked,
        "segments_not_tracked": outcome.segments_live - outcome.segments_tracked,
        "account": access.name,
        **run_metadata(outcome),
    }


def series_results(context: dg.AssetExecutionContext, access: KlaviyoAccess, outcome: SeriesOutcome, key: dg.AssetKey):
    """A finished range: each day's own metadata on its own materialization."""
    for day in outcome.days:
        context.add_asset_metadata(day_metadata(access, outcome, day), partition_key=day.isoformat())
    resumes = context.run.tags.get(RESUMES_TAG)
    if resumes:
        context.log.info("finished the range that run %s left unfinished", resumes)
    yield dg.MaterializeResult(asset_key=key)


def series_failure(
    context: dg.AssetExecutionContext, access: KlaviyoAccess, outcome: SeriesOutcome, key: dg.AssetKey
) -> dg.Failure:
    """A range cut short: materialize the complete days, tag the run for the resume sensor, and say what is left."""
    unfinished = outcome.unfinished
    assert unfinished is not None
    complete = outcome.complete_days
    for day in complete:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=key, partition=day.isoformat(), metadata=day_metadata(access, outcome, day)
            )
        )
    progress = {
        "backfill_requests_done": unfinished.requests_done,
        "backfill_requests_left": unfinished.requests_left,
        "backfill_resumes_at": iso(unfinished.resume_at),
        "backfill_expected_finish": iso(unfinished.expected_finish),
    }
    context.instance.add_run_tags(
        context.run_id,
        {
            UNFINISHED_TAG: access.name,
            ACCOUNT_TAG: access.name,
            RANGE_TAG: f"{outcome.first_day}..{outcome.last_day}",
            RESUME_AT_TAG: iso(unfinished.resume_at),
            KLAVIYO_ACCOUNT_TAG: outcome.account_id,
        },
    )
    days = len(outcome.days)
    return dg.Failure(
        description=(
            f"{access.label}: {unfinished.requests_done} of {unfinished.requests_total} requests done; the rest "
            f"resumes at {iso(unfinished.resume_at)} ({unfinished.why}). Every response received is loaded: "
            f"{len(complete)} of {days} days are complete and materialized, the other {days - len(complete)} show "
            "as failed until segment_growth_resume_sensor (or a re-run of the same range) finishes them, expected at "
            f"{iso(unfinished.expected_finish)}.{set_aside_note(outcome)}"
        ),
        metadata={**run_metadata(outcome), **progress},
        allow_retries=False,
    )


def set_aside_note(outcome: SeriesOutcome) -> str:
    """A sentence for a run's message naming the staged files it moved aside (their log lines say why)."""
    if not outcome.set_aside:
        return ""
    moved = ", ".join(str(aside.moved_to) for aside in outcome.set_aside)
    return f" Staged responses that could not be loaded were moved aside (the log says why and what to do): {moved}."
