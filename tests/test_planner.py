"""The request planner: minimal, exact, and refusing what Klaviyo would refuse before anything is sent."""

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_pipeline.klaviyo import (
    ReportWindowError,
    check_reporting_window,
    earliest_reportable_day,
    minimal_request_count,
    plan_series_requests,
)
from segment_pipeline.klaviyo.limits import (
    MAX_DAYS_PER_DAILY_SERIES,
    MAX_HISTORY_DAYS,
    MAX_SEGMENT_IDS_PER_REPORT,
    REPORTING_DATA_FLOOR,
)
from segment_pipeline.klaviyo.planner import custom_timeframe, series_filter

TODAY = dt.date(2026, 11, 26)


@st.composite
def ranges_and_segments(draw):
    today = draw(st.dates(min_value=dt.date(2023, 6, 2), max_value=dt.date(2030, 12, 31)))
    earliest = earliest_reportable_day(today)
    start = draw(st.dates(min_value=earliest, max_value=today))
    end = draw(st.dates(min_value=start, max_value=today))
    count = draw(st.integers(min_value=1, max_value=1050))
    return today, start, end, [f"S{i:05d}" for i in range(count)]


@settings(max_examples=300, deadline=None)
@given(ranges_and_segments())
def test_plan_is_minimal_and_covers_every_segment_day_exactly_once(case):
    today, start, end, ids = case
    plan = plan_series_requests(ids, start, end, today)
    days = (end - start).days + 1

    assert len(plan) == math.ceil(len(ids) / 100) * math.ceil(days / 60)
    assert len(plan) == minimal_request_count(len(ids), days)

    covered = {}
    for request in plan:
        assert 1 <= len(request.segment_ids) <= MAX_SEGMENT_IDS_PER_REPORT
        assert 1 <= request.window.days <= MAX_DAYS_PER_DAILY_SERIES
        for day in request.window.dates():
            for sid in request.segment_ids:
                key = (sid, day)
                assert key not in covered, f"{key} requested twice"
                covered[key] = True
    expected = {(sid, start + dt.timedelta(days=i)) for sid in ids for i in range(days)}
    assert set(covered) == expected


@settings(max_examples=200, deadline=None)
@given(ranges_and_segments())
def test_windows_are_consecutive_without_overlap_or_gap(case):
    today, start, end, ids = case
    windows = sorted({request.window for request in plan_series_requests(ids[:1], start, end, today)})
    assert windows[0].start == start and windows[-1].end == end
    for before, after in zip(windows, windows[1:]):
        assert after.start == before.end + dt.timedelta(days=1)


def test_duplicate_segment_ids_are_requested_once():
    plan = plan_series_requests(["a", "b", "a"], TODAY - dt.timedelta(days=3), TODAY, TODAY)
    assert [request.segment_ids for request in plan] == [("a", "b")]


def test_a_year_of_1000_segments_takes_70_requests():
    ids = [f"S{i}" for i in range(1000)]
    plan = plan_series_requests(ids, TODAY - dt.timedelta(days=364), TODAY, TODAY)
    assert len(plan) == 70


@pytest.mark.parametrize(
    "start, message",
    [
        pytest.param(TODAY - dt.timedelta(days=MAX_HISTORY_DAYS + 1), "one year", id="day 366"),
        pytest.param(dt.date(2023, 5, 31), "2023-06-01", id="before the floor"),
    ],
)
def test_refuses_windows_klaviyo_refuses(start, message):
    today = TODAY if start > dt.date(2024, 1, 1) else dt.date(2024, 1, 1)
    with pytest.raises(ReportWindowError, match=message):
        plan_series_requests(["a"], start, start + dt.timedelta(days=1), today)


def test_accepts_exactly_365_days_back_and_the_floor_itself():
    check_reporting_window(TODAY - dt.timedelta(days=MAX_HISTORY_DAYS), TODAY, TODAY)
    check_reporting_window(REPORTING_DATA_FLOOR, REPORTING_DATA_FLOOR, dt.date(2023, 6, 10))


def test_refuses_an_inverted_range():
    with pytest.raises(ReportWindowError, match="ends before it starts"):
        check_reporting_window(TODAY, TODAY - dt.timedelta(days=1), TODAY)


def test_timeframe_is_local_midnight_with_the_accounts_offset_on_each_side_of_dst():
    from segment_pipeline.klaviyo.planner import DayWindow

    frame = custom_timeframe(DayWindow(dt.date(2026, 3, 1), dt.date(2026, 3, 30)), "US/Eastern")
    assert frame == {"start": "2026-03-01T00:00:00-05:00", "end": "2026-03-30T00:00:00-04:00"}
    for value in frame.values():
        assert dt.datetime.fromisoformat(value).utcoffset() is not None


def test_filter_quotes_ids_and_refuses_too_many():
    assert series_filter(("a", 'b"c')) == 'any(segment_id,["a","b\\"c"])'
    with pytest.raises(ValueError):
        series_filter(tuple(str(i) for i in range(101)))
    with pytest.raises(ValueError):
        series_filter(())
