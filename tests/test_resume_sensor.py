"""The resume sensor's decisions, evaluated directly: wait for the resume time and the budget, then one run."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from segment_pipeline.defs.ingest.pending import PendingRange, read_pending, record_finished, record_unfinished
from segment_pipeline.defs.ingest.resume_sensor import RESUME_TAG, segment_growth_resume_sensor
from segment_pipeline.defs.resources import KlaviyoResource, WarehouseResource


def entry(resume_at: dt.datetime) -> PendingRange:
    now = dt.datetime.now(dt.UTC)
    return PendingRange(
        account_id="acct",
        start="2026-01-01",
        end="2026-06-30",
        requests_total=700,
        requests_done=225,
        resume_at=resume_at.isoformat(timespec="seconds"),
        expected_finish=(resume_at + dt.timedelta(days=3)).isoformat(timespec="seconds"),
        updated_at=(now - dt.timedelta(seconds=1)).isoformat(timespec="seconds"),
    )


def evaluate(instance, tmp_path, cursor=None):
    warehouse = WarehouseResource(warehouse_path=str(tmp_path / "warehouse.duckdb"), state_dir=str(tmp_path / "state"))
    # the klaviyo resource nests the warehouse one, so the resources are opened (and closed) as a block
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"klaviyo": KlaviyoResource.from_env(warehouse), "warehouse": warehouse},
    ) as context:
        return segment_growth_resume_sensor(context), context


def test_the_sensor_waits_for_the_resume_time_then_asks_for_one_run_of_the_range(tmp_path, monkeypatch):
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)  # the sensor never needs the key
    pending = tmp_path / "state" / "series_pending.json"
    with dg.instance_for_test() as instance:
        result, _ = evaluate(instance, tmp_path)
        assert isinstance(result, dg.SkipReason) and "no unfinished" in result.skip_message

        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)
        record_unfinished(pending, entry(later))
        result, context = evaluate(instance, tmp_path)
        assert isinstance(result, dg.SkipReason)
        assert "225 of 700 report requests done, 475 left; resumes at" in result.skip_message
        assert json.loads(context.cursor)["2026-01-01...2026-06-30"]["requests_left"] == 475

        record_unfinished(pending, entry(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)))
        result, _ = evaluate(instance, tmp_path)
        (request,) = result
        assert request.tags["dagster/asset_partition_range_start"] == "2026-01-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-06-30"
        assert request.tags[RESUME_TAG] == "2026-01-01...2026-06-30"
        assert request.run_key.startswith("2026-01-01...2026-06-30@")

    # a range completed by any run is forgotten
    assert record_finished(pending, dt.date(2025, 12, 1), dt.date(2026, 7, 1)) == ["2026-01-01...2026-06-30"]
    assert read_pending(pending) == {} and not pending.exists()


def test_a_damaged_record_is_reported_not_guessed(tmp_path):
    pending = tmp_path / "state" / "series_pending.json"
    pending.parent.mkdir(parents=True)
    pending.write_text('{"ranges": [1, 2')
    with dg.instance_for_test() as instance:
        result, _ = evaluate(instance, tmp_path)
    assert isinstance(result, dg.SkipReason)
    assert "is damaged" in result.skip_message and "Delete it and re-run" in result.skip_message


def test_a_year_of_10000_segments_finishes_over_four_days_of_quota():
    from segment_pipeline.defs.ingest.assets import expected_finish
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
