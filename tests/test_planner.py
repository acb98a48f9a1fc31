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


# -- planning only what is missing or not final ------------------------------------------------------------

from segment_pipeline.klaviyo.planner import (  # noqa: E402
    DayWindow,
    days_left,
    days_to_fetch,
    is_final,
    last_final_day,
    plan_needed_requests,
)


def test_a_day_is_final_once_it_was_older_than_the_lookback_when_fetched():
    fetched = dt.date(2026, 11, 26)
    assert last_final_day(fetched, 3) == dt.date(2026, 11, 22)
    assert is_final(dt.date(2026, 11, 22), fetched, 3)
    assert not is_final(dt.date(2026, 11, 23), fetched, 3)
    assert is_final(dt.date(2026, 11, 25), fetched, 0)
    assert not is_final(dt.date(2026, 1, 1), None, 3)  # fetched before the pipeline recorded when


@st.composite
def stored_cells(draw):
    """Random stored cells (segment, day) -> fetched_on around a 150-day range."""
    today = dt.date(2026, 11, 26)
    start = today - dt.timedelta(days=draw(st.integers(1, 300)))
    end = min(today - dt.timedelta(days=1), start + dt.timedelta(days=draw(st.integers(0, 150))))
    ids = [f"S{i}" for i in range(draw(st.integers(1, 230)))]
    lookback = draw(st.integers(0, 5))
    cells = {}
    for sid in draw(st.lists(st.sampled_from(ids), max_size=12, unique=True)):
        first = start - dt.timedelta(days=draw(st.integers(0, 8)))
        length = draw(st.integers(0, 80))
        age = draw(st.integers(0, 10))
        for i in range(length):
            day = first + dt.timedelta(days=i)
            if day < today:
                cells[(sid, day)] = min(today, day + dt.timedelta(days=age))
    return today, start, end, ids, lookback, cells


def islands(cells):
    """The warehouse query's shape: runs of consecutive days per (segment, fetched_on)."""
    rows = []
    for (sid, day), fetched in sorted(cells.items()):
        if rows and rows[-1][0] == sid and rows[-1][1] == fetched and rows[-1][3] == day - dt.timedelta(days=1):
            rows[-1] = (sid, fetched, rows[-1][2], day)
        else:
            rows.append((sid, fetched, day, day))
    return rows


def cells_asked_once(plan) -> set:
    """The (segment, day) cells a plan asks for, checking each request's limits and that none is asked twice."""
    covered = set()
    for request in plan:
        assert 1 <= len(request.segment_ids) <= MAX_SEGMENT_IDS_PER_REPORT
        assert 1 <= request.window.days <= MAX_DAYS_PER_DAILY_SERIES
        for sid in request.segment_ids:
            for day in request.window.dates():
                assert (sid, day) not in covered, "a cell asked for twice"
                covered.add((sid, day))
    return covered


@settings(max_examples=200, deadline=None)
@given(stored_cells())
def test_the_plan_asks_for_exactly_the_cells_missing_or_not_final_in_few_requests(case):
    today, start, end, ids, lookback, cells = case
    needed = days_to_fetch(ids, start, end, islands(cells), lookback, today)
    expected = set()
    for sid in ids:
        day = start
        while day <= end:
            if not is_final(day, cells.get((sid, day)), lookback):
                expected.add((sid, day))
            day += dt.timedelta(days=1)
        # the lookback before the range: stored days not final yet are refreshed along
        for back in range(1, lookback + 1):
            day = start - dt.timedelta(days=back)
            if (sid, day) in cells and not is_final(day, cells[(sid, day)], lookback):
                expected.add((sid, day))
    got = {(sid, d) for sid, days in needed.items() for w in days for d in w.dates()}
    assert got == expected

    plan = plan_needed_requests(needed)
    assert expected <= cells_asked_once(plan)
    assert [r.window.start for r in plan] == sorted(r.window.start for r in plan)  # oldest days first
    # never more requests than asking for the whole range would take
    if expected:
        span = (max(d for _, d in expected) - min(d for _, d in expected)).days + 1
        assert len(plan) <= minimal_request_count(len(ids), span) * max(1, len({needed[s] for s in needed}))


@settings(max_examples=100, deadline=None)
@given(ranges_and_segments(), st.integers(min_value=0, max_value=40))
def test_a_run_cut_short_after_k_requests_resumes_with_exactly_the_rest(case, k):
    today, start, end, ids = case
    end = min(end, today - dt.timedelta(days=5))  # old days: once fetched today they are final
    if end < start:
        return
    lookback = 3
    plan = plan_needed_requests(days_to_fetch(ids, start, end, [], lookback, today))
    assert len(plan) == minimal_request_count(len(ids), (end - start).days + 1)
    sent = plan[:k]
    cells = {(sid, day): today for r in sent for sid in r.segment_ids for day in r.window.dates()}
    needed = days_to_fetch(ids, start, end, islands(cells), lookback, today)
    rest = plan_needed_requests(needed)
    assert len(rest) == len(plan) - len(sent)
    # the days a cut-short run leaves incomplete are exactly those the unsent requests would have filled
    assert days_left(plan[len(sent) :], needed) == {d for days in needed.values() for w in days for d in w.dates()}


def test_segments_needing_different_days_are_planned_apart():
    today = dt.date(2026, 11, 26)
    start, end = dt.date(2026, 6, 1), dt.date(2026, 7, 30)  # 60 days
    old = [f"O{i}" for i in range(150)]
    new = [f"N{i}" for i in range(30)]
    cells = {(sid, start + dt.timedelta(days=i)): today for sid in old for i in range(60)}
    cells.update({(sid, start + dt.timedelta(days=i)): today for sid in old[:100] for i in range(60)})
    needed = days_to_fetch(old + new, start, end, islands(cells), 3, today)
    assert set(needed) == set(new)
    plan = plan_needed_requests(needed)
    assert len(plan) == 1 and set(plan[0].segment_ids) == set(new) and plan[0].window == DayWindow(start, end)


# -- numbers that have not settled: new or processing segments, an all-zero past ------------------------------

from segment_pipeline.klaviyo.planner import (  # noqa: E402
    NEW_SEGMENT_SETTLE,
    ZERO_HISTORY_WAIT,
    SegmentFacts,
    Settling,
    settling_of,
    to_repair,
)

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_a_new_segment_settles_the_first_local_day_after_48_hours():
    facts = SegmentFacts("s", created=at("2026-11-24T10:00:00+00:00"), listed_at=at("2026-11-26T09:00:00+00:00"))
    assert NEW_SEGMENT_SETTLE == dt.timedelta(hours=48)
    # 48 h after creation is 2026-11-26 10:00 UTC: every fetch of the 27th is later
    assert settling_of(facts, "UTC") == Settling(settled_on=dt.date(2026, 11, 27), refetch_from=dt.date(2026, 11, 27))
    # in the account's days: 2026-11-26 10:00 UTC is already the 27th at UTC+14
    assert settling_of(facts, "Pacific/Kiritimati").settled_on == dt.date(2026, 11, 28)
    # a fetch on the settle day itself, or earlier, is not final; the day after it is
    assert not is_final(dt.date(2026, 1, 1), dt.date(2026, 11, 26), 5, settled_on=dt.date(2026, 11, 27))
    assert is_final(dt.date(2026, 1, 1), dt.date(2026, 11, 27), 5, settled_on=dt.date(2026, 11, 27))
    # the lookback still applies to a settled segment
    assert not is_final(dt.date(2026, 11, 22), dt.date(2026, 11, 27), 5, settled_on=dt.date(2026, 11, 27))


def test_processing_seen_later_than_creation_moves_the_settle_day():
    facts = SegmentFacts(
        "s",
        created=at("2025-01-01T00:00:00+00:00"),
        listed_at=at("2026-11-26T06:00:00+00:00"),
        processing_seen_at=at("2026-11-26T06:00:00+00:00"),
    )
    assert settling_of(facts, "UTC").settled_on == dt.date(2026, 11, 29)


def test_nothing_dates_a_segment_without_creation_or_processing():
    assert settling_of(SegmentFacts("s", created=None, listed_at=at("2026-11-26T06:00:00+00:00")), "UTC") is None


def test_a_creation_time_later_than_the_listing_counts_as_the_listing():
    facts = SegmentFacts("s", created=at("2099-01-01T00:00:00+00:00"), listed_at=at("2026-11-26T06:00:00+00:00"))
    assert settling_of(facts, "UTC").settled_on == dt.date(2026, 11, 29)


@pytest.mark.parametrize(
    "first_nonzero_day, members_now, waits",
    [
        pytest.param(None, 500, True, id="zeros before creation, members now"),
        pytest.param(dt.date(2026, 11, 20), 500, True, id="non-zero only from the creation day"),
        pytest.param(dt.date(2026, 11, 10), 500, False, id="a non-zero day before creation"),
        pytest.param(None, 0, False, id="no members now"),
    ],
)
def test_an_all_zero_past_where_klaviyo_reports_members_waits_up_to_a_week(first_nonzero_day, members_now, waits):
    created = at("2026-11-20T15:00:00+00:00")
    facts = SegmentFacts(
        "s",
        created=created,
        listed_at=at("2026-11-26T06:00:00+00:00"),
        first_stored_day=dt.date(2026, 11, 1),
        first_nonzero_day=first_nonzero_day,
        members_now=members_now,
    )
    settle = settling_of(facts, "UTC")
    assert settle.refetch_from == dt.date(2026, 11, 23)  # asked again from the day it is past 48 h
    assert settle.settled_on == (
        (created + ZERO_HISTORY_WAIT).date() + dt.timedelta(days=1) if waits else settle.refetch_from
    )


def test_segments_to_repair_are_those_with_cells_fetched_before_they_settled_and_due_today():
    today = dt.date(2026, 11, 26)
    settling = {
        "due": Settling(dt.date(2026, 11, 25), dt.date(2026, 11, 25)),
        "waiting": Settling(dt.date(2026, 11, 28), dt.date(2026, 11, 28)),
        "repaired": Settling(dt.date(2026, 11, 25), dt.date(2026, 11, 25)),
    }
    facts = [
        SegmentFacts("due", created=None, first_fetched_on=dt.date(2026, 11, 24)),
        SegmentFacts("waiting", created=None, first_fetched_on=dt.date(2026, 11, 24)),
        SegmentFacts("repaired", created=None, first_fetched_on=dt.date(2026, 11, 25)),
        SegmentFacts("old", created=None, first_fetched_on=dt.date(2025, 1, 1)),
    ]
    assert to_repair(facts, settling, today) == ["due"]


@st.composite
def stored_cells_and_settling(draw):
    """`stored_cells`, some of whose segments have not settled, are due a repair, or settled after a fetch."""
    today, start, end, ids, lookback, cells = draw(stored_cells())
    settling = {}
    for sid in draw(st.lists(st.sampled_from(ids), max_size=8, unique=True)):
        settled_on = today + dt.timedelta(days=draw(st.integers(-12, 4)))
        refetch_from = settled_on - dt.timedelta(days=draw(st.integers(0, 6)))
        settling[sid] = Settling(settled_on=settled_on, refetch_from=refetch_from)
    return today, start, end, ids, lookback, cells, settling


@settings(max_examples=120, deadline=None)
@given(stored_cells_and_settling())
def test_the_plan_asks_for_unsettled_cells_and_never_for_final_ones(case):
    today, start, end, ids, lookback, cells, settling = case
    needed = days_to_fetch(ids, start, end, islands(cells), lookback, today, settling=settling)
    earliest = earliest_reportable_day(today)
    expected = set()
    for sid in ids:
        settle = settling.get(sid)
        settled_on = settle.settled_on if settle else None
        day = start
        while day <= end:
            if not is_final(day, cells.get((sid, day)), lookback, settled_on):
                expected.add((sid, day))
            day += dt.timedelta(days=1)
        for back in range(1, lookback + 1):
            day = start - dt.timedelta(days=back)
            if (sid, day) in cells and day >= earliest and not is_final(day, cells[(sid, day)], lookback, settled_on):
                expected.add((sid, day))
        # fetched before the segment settled: asked again, wherever the day lies, once it is due
        if settle is not None and settle.refetch_from <= today:
            expected |= {
                (s, d) for (s, d), fetched in cells.items() if s == sid and d >= earliest and fetched < settled_on
            }
    got = {(sid, d) for sid, days in needed.items() for w in days for d in w.dates()}
    assert got == expected
    assert expected <= cells_asked_once(plan_needed_requests(needed))


@st.composite
def daily_runs_history(draw):
    """What the daily run reads after a daily run every day, as islands: the lookback days, last fetched
    yesterday; some segments new (not settled, not due yet), some due a repair of their whole stored past."""
    today = draw(st.dates(min_value=dt.date(2024, 9, 1), max_value=dt.date(2030, 12, 31)))
    lookback = draw(st.integers(0, 59))
    ids = [f"S{i:04d}" for i in range(draw(st.integers(1, 1050)))]
    yesterday = today - dt.timedelta(days=1)
    new = draw(st.integers(0, len(ids)))
    due = draw(st.integers(0, len(ids) - new))
    history = draw(st.integers(lookback + 2, 400))
    stored = []
    for index, sid in enumerate(ids):
        if new <= index < new + due:  # fetched in its first hours, two days ago: all of it read, unsettled
            stored.append(
                (sid, today - dt.timedelta(days=3), today - dt.timedelta(days=history), today - dt.timedelta(days=2))
            )
        elif lookback:
            stored.append((sid, yesterday, today - dt.timedelta(days=lookback + 1), today - dt.timedelta(days=2)))
    settling = {sid: Settling(today + dt.timedelta(days=2), today + dt.timedelta(days=2)) for sid in ids[:new]}
    settling.update({sid: Settling(today, today) for sid in ids[new : new + due]})
    return today, lookback, ids, history, stored, settling, due


@settings(max_examples=150, deadline=None)
@given(daily_runs_history())
def test_the_daily_run_is_one_request_per_100_segments_whatever_the_lookback(case):
    today, lookback, ids, history, stored, settling, due = case
    yesterday = today - dt.timedelta(days=1)
    plan = plan_needed_requests(days_to_fetch(ids, yesterday, yesterday, stored, lookback, today, settling=settling))
    others = len(ids) - due
    # the lookback rides along in the daily request; segments not settled yet are in the same requests
    daily = math.ceil(others / MAX_SEGMENT_IDS_PER_REPORT)
    assert minimal_request_count(others, lookback + 1) == daily
    # a segment due a repair is asked once for its whole stored past (what Klaviyo still reports of it), apart
    reportable = (yesterday - max(today - dt.timedelta(days=history), earliest_reportable_day(today))).days + 1
    repair = minimal_request_count(due, reportable)
    assert len(plan) == daily + repair
