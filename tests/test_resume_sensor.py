"""The resume sensor's decisions, evaluated directly on run records: wait for the resume time and the budget,
then one run of the range, until a run finishes it."""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import pytest

from segment_pipeline.defs.account_names import ACCOUNT_TAG, asset_key, job_name
from segment_pipeline.defs.ingest.resume_sensor import MAX_ATTEMPTS_WITHOUT_PROGRESS, SENSOR_NAME
from segment_pipeline.defs.ingest.series_results import (
    KLAVIYO_ACCOUNT_TAG,
    RANGE_TAG,
    RESUME_AT_TAG,
    RESUMES_TAG,
    UNFINISHED_TAG,
)
from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from . import pipeline_helpers

KLAVIYO_ID = "acct"


@pytest.fixture
def sensor(tmp_path):
    """The code location's sensor (a report budget of one request a day), without a key: it never needs one."""
    defs = pipeline_helpers.definitions(None, tmp_path, KLAVIYO_API_KEY="", KLAVIYO_REPORT_DAILY_LIMIT="1")
    return defs.get_sensor_def(SENSOR_NAME)


def evaluate(sensor, instance):
    with dg.build_sensor_context(instance=instance) as context:
        return sensor(context)


def add_run(instance, tags: dict, status=dg.DagsterRunStatus.FAILURE) -> str:
    run = dg.DagsterRun(job_name=job_name("default"), run_id=str(uuid.uuid4()), tags=tags, status=status)
    instance.add_run(run)
    return run.run_id


def cut_short(instance, resume_at: str, range_tag: str = "2026-01-01..2026-06-30") -> str:
    """A series run the budget cut short, tagged as the series step tags it."""
    return add_run(
        instance,
        {
            UNFINISHED_TAG: "default",
            ACCOUNT_TAG: "default",
            RANGE_TAG: range_tag,
            RESUME_AT_TAG: resume_at,
            KLAVIYO_ACCOUNT_TAG: KLAVIYO_ID,
        },
    )


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def test_the_sensor_waits_for_the_resume_time_then_asks_for_one_run_until_one_finishes(sensor):
    now = dt.datetime.now(dt.UTC)
    with dg.instance_for_test() as instance:
        result = evaluate(sensor, instance)
        assert isinstance(result, dg.SkipReason) and result.skip_message == "no unfinished series range"

        later = now + dt.timedelta(hours=5)
        cut = cut_short(instance, iso(later))
        result = evaluate(sensor, instance)
        assert isinstance(result, dg.SkipReason)
        assert result.skip_message == (
            f"account 'default' 2026-01-01 to 2026-06-30 (left unfinished by run {cut}): resumes at {iso(later)}"
        )

        cut = cut_short(instance, iso(now - dt.timedelta(seconds=5)))
        (request,) = evaluate(sensor, instance).run_requests
        assert request.tags["dagster/asset_partition_range_start"] == "2026-01-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-06-30"
        assert request.tags[RESUMES_TAG] == cut and request.run_key == f"{cut}#0"
        assert request.asset_selection == [asset_key("default", "segment_series_daily")]

        # while its resume run goes on, nothing more is asked
        resuming = add_run(instance, {RESUMES_TAG: cut}, status=dg.DagsterRunStatus.STARTED)
        assert f"run {resuming} is resuming it" in evaluate(sensor, instance).skip_message
        # that run failed without progress: the next attempt has its own run key
        instance.report_run_failed(instance.get_run_by_id(resuming))
        (request,) = evaluate(sensor, instance).run_requests
        assert request.run_key == f"{cut}#1"
        # a run that finished the range: forgotten
        add_run(instance, {RESUMES_TAG: cut}, status=dg.DagsterRunStatus.SUCCESS)
        assert evaluate(sensor, instance).skip_message == "no unfinished series range"


def test_attempts_without_progress_stop_and_say_what_to_do(sensor):
    with dg.instance_for_test() as instance:
        cut = cut_short(instance, iso(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
        for _ in range(MAX_ATTEMPTS_WITHOUT_PROGRESS):
            add_run(instance, {RESUMES_TAG: cut})
        message = evaluate(sensor, instance).skip_message
    assert f"{MAX_ATTEMPTS_WITHOUT_PROGRESS} resume runs ended without progress" in message
    assert "fix what its log says, then re-run the range" in message


def test_the_budget_must_have_room(sensor, tmp_path):
    # the day's one report request is spent (the sensor reads the same ledger)
    settings = pipeline_helpers.settings(None, tmp_path, KLAVIYO_REPORT_DAILY_LIMIT="1")
    KlaviyoAccess(settings, settings.accounts["default"]).budget(KLAVIYO_ID).take(SEGMENT_SERIES_PATH)
    with dg.instance_for_test() as instance:
        cut_short(instance, iso(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
        message = evaluate(sensor, instance).skip_message
    assert message.endswith("waiting for room in the report budget"), message


def test_damaged_tags_are_reported_or_left_to_the_budget_never_a_crash(sensor):
    with dg.instance_for_test() as instance:
        cut = cut_short(instance, iso(dt.datetime.now(dt.UTC)), range_tag="2026-01-01..June")
        message = evaluate(sensor, instance).skip_message
        assert (
            f"run {cut} is tagged as an unfinished range, but its tag {RANGE_TAG}='2026-01-01..June' is not a range"
            in message
        )
        # a resume time that cannot be read (or has no offset) is due now: the report budget still decides
        for resume_at in ("soon", "2026-01-01T00:00:00"):
            cut = cut_short(instance, resume_at)
            (request,) = evaluate(sensor, instance).run_requests
            assert request.tags[RESUMES_TAG] == cut


def test_a_year_of_10000_segments_finishes_over_four_days_of_quota():
    from segment_pipeline.ingest.series import expected_finish
    from segment_pipeline.klaviyo.planner import days_to_fetch, plan_needed_requests

    today = dt.date(2026, 11, 26)
    ids = [f"S{i:05d}" for i in range(10_000)]
    plan = plan_needed_requests(
        days_to_fetch(ids, today - dt.timedelta(days=365), today - dt.timedelta(days=1), [], 3, today)
    )
    assert len(plan) == 700
    # windows outer, batches inner: the first 225 requests complete the oldest three windows of 60 days
    assert {r.window for r in plan[:200]} == {plan[0].window, plan[100].window}
    day = 24 * 60 * 60
    first_run = dt.datetime(2026, 11, 26, 6, tzinfo=dt.UTC)
    finish = expected_finish(first_run + dt.timedelta(days=1), 700 - 225, 225, day, 31.5)
    # day 1 sends 225; days 2, 3 and 4 send the other 475 (225, 225, 25)
    assert first_run + dt.timedelta(days=3) < finish < first_run + dt.timedelta(days=3, hours=1)
