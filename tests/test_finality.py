"""Numbers are never frozen before Klaviyo has them: a new segment's backfill and revised recent days.

The real ingestion assets against the simulator over HTTP, several days apart: `time_machine` moves the clock
of this process (the pipeline and the simulator serving it), so each phase runs at local noon of its day.
"""

import datetime as dt
import math

import pytest
import time_machine

from segment_pipeline.config import DEFAULT_LOOKBACK_DAYS
from segment_pipeline.klaviyo.limits import MAX_SEGMENT_IDS_PER_REPORT, SEGMENT_SERIES_PATH
from segment_pipeline.klaviyo.planner import NEW_SEGMENT_SETTLE

from .pipeline_helpers import API_KEY, FAST, SEGMENTS, SERIES, materialize, query, range_tags

SERIES_NODE = "klaviyo__default__segment_series_daily"


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    # the default lookback is under test: none may leak in from the environment the tests copy
    monkeypatch.delenv("SERIES_LOOKBACK_DAYS", raising=False)


def noon(sim, day: dt.date):
    """This process's clock at local noon of `day` (it keeps running from there)."""
    return time_machine.travel(dt.datetime.combine(day, dt.time(12), tzinfo=sim.account.zone), tick=True)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def stored(tmp_path, segment_id: str | None = None) -> dict:
    rows = query(
        tmp_path / "warehouse.duckdb",
        "select segment_id, date, total_members, members_added, members_removed from klaviyo.segment_series_daily"
        + (" where segment_id = ?" if segment_id else ""),
        [segment_id] if segment_id else [],
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def by_cell(rows_of, ids, first: dt.date, last: dt.date) -> dict:
    return {
        (segment_id, day): row
        for segment_id in ids
        for day, row in zip(days(first, last), rows_of(segment_id, first, last), strict=True)
    }


def truth(sim, ids, first: dt.date, last: dt.date) -> dict:
    """The settled numbers."""
    return by_cell(sim.account.series_rows, ids, first, last)


def answered_now(sim, ids, first: dt.date, last: dt.date) -> dict:
    """What the simulator's reports answer at this moment (before the numbers settle, not the truth)."""
    return by_cell(sim.account.reported_rows, ids, first, last)


def run_series(sim, tmp_path, first: dt.date, last: dt.date | None = None) -> dict:
    """Materialize the series for `first`..`last` (one partition without `last`); its metadata, by name."""
    sim.reset_log()
    if last is None:
        result = materialize([SERIES], sim, tmp_path, partition_key=first.isoformat())
    else:
        result = materialize([SERIES], sim, tmp_path, tags=range_tags(first, last))
    metadata = result.asset_materializations_for_node(SERIES_NODE)[0].metadata
    return {name: value.value for name, value in metadata.items()}


def windows_asked(sim) -> list[tuple[str, str, int]]:
    """(first day, last day, segment count) of each report request since the log was reset."""
    asked = []
    for request in sim.requests:
        if request.path == SEGMENT_SERIES_PATH:
            attributes = request.json["data"]["attributes"]
            ids = attributes["filter"].count('"') // 2
            asked.append((attributes["timeframe"]["start"][:10], attributes["timeframe"]["end"][:10], ids))
    return sorted(asked)


def test_a_segment_first_fetched_while_processing_ends_with_its_true_history(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=6, seed=42, speed=FAST)
    t0 = sim.account.today()
    first = t0 - dt.timedelta(days=20)
    with noon(sim, t0):
        fresh = sim.account.create_segment("Fresh VIPs", processing_hours=1, backfill_hours=6)
        materialize([SEGMENTS], sim, tmp_path)
        flags = query(
            tmp_path / "warehouse.duckdb",
            "select is_processing, processing_seen_at is not null from klaviyo.segments where id = ?",
            [fresh.id],
        )
        assert flags == [(True, True)]
        metadata = run_series(sim, tmp_path, first, t0 - dt.timedelta(days=1))
        assert metadata["run_segments_not_settled"] == 1
    old_ids = [s.id for s in sim.account.segments if s.id != fresh.id]
    held = stored(tmp_path)
    # Klaviyo answered zeros for the new segment's past: stored, but not final
    assert all(held[(fresh.id, day)] == (0, 0, 0) for day in days(first, t0 - dt.timedelta(days=1)))
    assert all(row[0] > 0 for row in truth(sim, [fresh.id], first, t0).values())
    assert {k: v for k, v in held.items() if k[0] != fresh.id} == truth(sim, old_ids, first, t0 - dt.timedelta(days=1))

    # the next day its backfill is done, but it is still within its settle period: the daily run asks for its
    # days in the lookback only, in the same request as every other segment's
    with noon(sim, t0 + dt.timedelta(days=1)):
        metadata = run_series(sim, tmp_path, t0)
        assert sim.count(path=SEGMENT_SERIES_PATH) == 1
        assert metadata["run_segments_not_settled"] == 1 and metadata["run_unsettled_cells_refreshed"] == 0
    lookback_first = t0 - dt.timedelta(days=DEFAULT_LOOKBACK_DAYS)
    assert stored(tmp_path, fresh.id) == {
        **{(fresh.id, day): (0, 0, 0) for day in days(first, lookback_first - dt.timedelta(days=1))},
        **truth(sim, [fresh.id], lookback_first, t0),
    }

    # once settled (48 h after its creation, the first run of the day after) its whole past is asked again
    settled_on = (fresh.created + NEW_SEGMENT_SETTLE).astimezone(sim.account.zone).date() + dt.timedelta(days=1)
    assert settled_on == t0 + dt.timedelta(days=3)
    day = settled_on - dt.timedelta(days=1)
    with noon(sim, settled_on):
        materialize([SEGMENTS], sim, tmp_path)  # no longer processing: the last time it was is kept
        assert query(
            tmp_path / "warehouse.duckdb",
            "select is_processing, processing_seen_at < created + interval 1 hour from klaviyo.segments where id = ?",
            [fresh.id],
        ) == [(False, True)]
        metadata = run_series(sim, tmp_path, day)
        # one request for the old segments' last days, one for the new segment's whole past
        assert windows_asked(sim) == [
            (first.isoformat(), day.isoformat(), 1),
            # (no run the day before: its lookback starts a day earlier)
            ((day - dt.timedelta(days=DEFAULT_LOOKBACK_DAYS)).isoformat(), day.isoformat(), len(old_ids)),
        ]
        outside = days(first, day - dt.timedelta(days=DEFAULT_LOOKBACK_DAYS + 1))
        assert metadata["run_unsettled_cells_refreshed"] == len(outside)
        assert metadata["run_segments_not_settled"] == 0
    assert stored(tmp_path, fresh.id) == truth(sim, [fresh.id], first, day)

    # settled: its old days are final, never asked again; the daily run is one request for every segment
    with noon(sim, settled_on + dt.timedelta(days=1)):
        metadata = run_series(sim, tmp_path, settled_on)
        assert windows_asked(sim) == [
            ((settled_on - dt.timedelta(days=DEFAULT_LOOKBACK_DAYS)).isoformat(), settled_on.isoformat(), 7)
        ]
        assert metadata["run_unsettled_cells_refreshed"] == 0
        old_days = (first, t0 - dt.timedelta(days=DEFAULT_LOOKBACK_DAYS))  # each read once at least 6 days old
        assert run_series(sim, tmp_path, *old_days)["run_report_requests_sent"] == 0
    assert stored(tmp_path) == truth(sim, [*old_ids, fresh.id], first, settled_on)


def test_an_all_zero_past_where_klaviyo_reports_members_is_asked_again_until_the_backfill_lands(
    make_simulator, tmp_path
):
    sim = make_simulator(api_key=API_KEY, segment_count=4, seed=42, speed=FAST)
    t0 = sim.account.today()
    first = t0 - dt.timedelta(days=12)
    with noon(sim, t0):
        # created three days ago, done processing, but Klaviyo's backfill of its past takes 100 hours: its
        # age alone would call it settled
        slow = sim.account.create_segment(
            "Slow backfill", created=sim.account.now() - dt.timedelta(hours=72), processing_hours=1, backfill_hours=100
        )
        materialize([SEGMENTS], sim, tmp_path)
        run_series(sim, tmp_path, first, t0 - dt.timedelta(days=1))
    created_day = slow.created.date()
    held = stored(tmp_path, slow.id)
    assert all(held[(slow.id, d)] == (0, 0, 0) for d in days(first, created_day - dt.timedelta(days=1)))
    assert held[(slow.id, t0 - dt.timedelta(days=1))][0] > 0  # Klaviyo reports members

    with noon(sim, t0 + dt.timedelta(days=2)):  # the backfill has landed
        materialize([SEGMENTS], sim, tmp_path)
        metadata = run_series(sim, tmp_path, t0 + dt.timedelta(days=1))
        assert metadata["run_segments_not_settled"] == 1 and metadata["run_unsettled_cells_refreshed"] > 0
    assert stored(tmp_path, slow.id) == truth(sim, [slow.id], first, t0 + dt.timedelta(days=1))

    # its past is no longer all zeros: settled by its age, so nothing old is asked again
    with noon(sim, t0 + dt.timedelta(days=3)):
        metadata = run_series(sim, tmp_path, t0 + dt.timedelta(days=2))
        assert sim.count(path=SEGMENT_SERIES_PATH) == 1
        assert metadata["run_segments_not_settled"] == 0 and metadata["run_unsettled_cells_refreshed"] == 0


def test_revised_recent_days_are_corrected_by_the_daily_runs_one_request_per_100_segments(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=101, seed=42, speed=FAST, revision_days=5)
    ids = [s.id for s in sim.account.segments]
    per_run = math.ceil(len(ids) / MAX_SEGMENT_IDS_PER_REPORT)
    t0 = sim.account.today()
    day = t0 - dt.timedelta(days=1)
    with noon(sim, t0):
        materialize([SEGMENTS], sim, tmp_path)
        run_series(sim, tmp_path, day)
        assert stored(tmp_path) == answered_now(sim, ids, day, day)
    assert stored(tmp_path) != truth(sim, ids, day, day)  # the day was not counted in full yet

    def daily_run(today: dt.date) -> None:
        # the lookback rides in the daily request: one per 100 segments
        metadata = run_series(sim, tmp_path, today - dt.timedelta(days=1))
        assert sim.count(path=SEGMENT_SERIES_PATH) == metadata["run_report_requests_sent"] == per_run
        held = stored(tmp_path)
        now = answered_now(sim, ids, day, today - dt.timedelta(days=1))
        assert {key: held[key] for key in now} == now  # what Klaviyo answers now, revised days included

    with noon(sim, t0 + dt.timedelta(days=1)):  # the next daily run corrects the revised day
        daily_run(t0 + dt.timedelta(days=1))
    assert stored(tmp_path) != truth(sim, ids, day, t0)  # still open

    # the daily run reads a day a last time at lookback + 1 days old: past Klaviyo's revision window
    last_read = day + dt.timedelta(days=DEFAULT_LOOKBACK_DAYS + 1)
    with noon(sim, last_read):
        daily_run(last_read)
    assert {k: v for k, v in stored(tmp_path).items() if k[1] == day} == truth(sim, ids, day, day)
    with noon(sim, last_read + dt.timedelta(days=1)):  # final: never asked again
        assert run_series(sim, tmp_path, day)["run_report_requests_sent"] == 0
