"""Turning a series response into rows: the local calendar day, aligned arrays, all-or-nothing."""

import datetime as dt

import pytest

from segment_pipeline.klaviyo import IncompleteSeriesResponse, KlaviyoResponseError, series_rows
from segment_pipeline.klaviyo.planner import DayWindow
from segment_pipeline.klaviyo.series import local_date

WINDOW = DayWindow(dt.date(2026, 3, 7), dt.date(2026, 3, 9))


def response(date_times, results):
    return {"data": {"type": "segment-series-report", "attributes": {"date_times": date_times, "results": results}}}


def result(segment_id, **overrides):
    stats = {
        "total_members": [10, 12, 11],
        "members_added": [3, 4, 1],
        "members_removed": [1, 2, 2],
        "net_members_changed": [2, 2, -1],
    }
    stats.update(overrides)
    return {"groupings": {"segment_id": segment_id}, "statistics": stats}


EASTERN_DAYS = ["2026-03-07T00:00:00-05:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"]


def test_rows_use_the_written_local_day_never_utc():
    table = series_rows(
        response(EASTERN_DAYS, [result("AAA111")]),
        account_id="acct",
        timezone="US/Eastern",
        requested_ids=("AAA111",),
        window=WINDOW,
    )
    rows = table.to_pylist()
    assert [row["date"] for row in rows] == [dt.date(2026, 3, 7), dt.date(2026, 3, 8), dt.date(2026, 3, 9)]
    assert rows[2] == {
        "account_id": "acct",
        "segment_id": "AAA111",
        "date": dt.date(2026, 3, 9),
        "total_members": 11,
        "members_added": 1,
        "members_removed": 2,
        "net_members_changed": -1,
    }


def test_a_utc_instant_becomes_the_accounts_local_day():
    # 2026-03-08T03:00Z is still the evening of 2026-03-07 in New York
    assert local_date("2026-03-08T03:00:00+00:00", "US/Eastern") == dt.date(2026, 3, 7)
    # a midnight in Tokyo written with its own offset names its own day
    assert local_date("2026-03-08T00:00:00+09:00", "US/Eastern") == dt.date(2026, 3, 8)


@pytest.mark.parametrize(
    "bad, message",
    [
        pytest.param({"total_members": [1, 2]}, "misaligned", id="short array"),
        pytest.param({"members_added": [1, 2, 3, 4]}, "misaligned", id="long array"),
        pytest.param({"members_removed": [1, "x", 2]}, "whole number", id="text count"),
        pytest.param({"members_removed": [1, 2.5, 2]}, "whole number", id="fraction"),
        pytest.param({"members_removed": [True, 1, 2]}, "whole number", id="boolean"),
        pytest.param({"net_members_changed": None}, "not an array", id="null"),
    ],
)
def test_a_malformed_result_rejects_the_whole_response(bad, message):
    body = response(EASTERN_DAYS, [result("good11"), result("bad111", **bad)])
    with pytest.raises(KlaviyoResponseError, match=message):
        series_rows(body, account_id="a", timezone="US/Eastern", requested_ids=("good11", "bad111"), window=WINDOW)


def test_unrequested_segment_days_outside_the_window_and_missing_keys_are_errors():
    kwargs = dict(account_id="a", timezone="UTC", window=WINDOW)
    with pytest.raises(KlaviyoResponseError, match="not requested"):
        series_rows(response(EASTERN_DAYS, [result("zzz")]), requested_ids=("AAA111",), **kwargs)
    with pytest.raises(KlaviyoResponseError, match="outside"):
        days = ["2026-03-06T00:00:00+00:00", "2026-03-07T00:00:00+00:00", "2026-03-08T00:00:00+00:00"]
        series_rows(response(days, [result("a")]), requested_ids=("a",), **kwargs)
    with pytest.raises(KlaviyoResponseError, match="date_times"):
        series_rows({"data": {"attributes": {"results": []}}}, requested_ids=("a",), **kwargs)
    stats = result("a")
    del stats["statistics"]["members_removed"]
    with pytest.raises(KlaviyoResponseError, match="lacks members_removed"):
        series_rows(response(EASTERN_DAYS, [stats]), requested_ids=("a",), **kwargs)


def test_missing_days_and_segments_are_named_and_abbreviated_when_many():
    window = DayWindow(dt.date(2026, 3, 1), dt.date(2026, 3, 10))
    present = ["2026-03-04T00:00:00+00:00"]
    one_day = {name: [1] for name in ("total_members", "members_added", "members_removed", "net_members_changed")}
    requested = ("a", "b", "c", "d", "e", "f", "g", "h")
    body = response(present, [{"groupings": {"segment_id": "a"}, "statistics": one_day}])
    with pytest.raises(IncompleteSeriesResponse) as caught:
        series_rows(body, account_id="x", timezone="UTC", requested_ids=requested, window=window)
    error = caught.value
    assert len(error.missing_days) == 9 and dt.date(2026, 3, 4) not in error.missing_days
    assert error.missing_segment_ids == requested[1:]
    message = str(error)
    assert "days 2026-03-01, 2026-03-02, 2026-03-03, 2026-03-05, 2026-03-06 and 4 more" in message
    assert "segments b, c, d, e, f and 2 more are missing from results" in message
    assert "2026-03-01..2026-03-10" in message


def test_days_after_the_accounts_today_are_not_expected():
    # a window reaching into the future is answered up to today; that is complete
    table = series_rows(
        response(EASTERN_DAYS[:2], [result("a", **{k: v[:2] for k, v in result("a")["statistics"].items()})]),
        account_id="x",
        timezone="US/Eastern",
        requested_ids=("a",),
        window=WINDOW,
        today=dt.date(2026, 3, 8),
    )
    assert table.num_rows == 2
    with pytest.raises(IncompleteSeriesResponse, match="2026-03-09"):
        series_rows(
            response(EASTERN_DAYS[:2], [result("a", **{k: v[:2] for k, v in result("a")["statistics"].items()})]),
            account_id="x",
            timezone="US/Eastern",
            requested_ids=("a",),
            window=WINDOW,
            today=dt.date(2026, 3, 9),
        )


def staged(segment_ids, first, days, fetched_at, value):
    """The rows of one response, as staged: every requested segment and day, each number `value`."""
    import pyarrow as pa

    from segment_pipeline.sources.series_staging import STAGED_SCHEMA

    cells = [(sid, first + dt.timedelta(days=d)) for sid in segment_ids for d in range(days)]
    columns = {
        "account_id": ["acct"] * len(cells),
        "segment_id": [sid for sid, _ in cells],
        "date": [day for _, day in cells],
        "fetched_on": [fetched_at.date()] * len(cells),
        "fetched_at": [fetched_at] * len(cells),
    }
    columns |= {name: [value] * len(cells) for name in STAGED_SCHEMA.names if name not in columns}
    return pa.table(columns, schema=STAGED_SCHEMA)


def test_a_load_reads_each_cell_once_from_the_newest_file_that_holds_it(tmp_path):
    """The series merge inserts what the load reads without ranking duplicates: overlapping files of one load
    must give each cell once, from the newest fetch, and files that overlap nothing give all their rows."""
    from segment_pipeline.klaviyo.planner import SeriesRequest
    from segment_pipeline.sources.series_staging import SeriesStaging, prepare_load

    staging = SeriesStaging(tmp_path / "staging", "acct", tmp_path / "quarantine")
    start, moment = dt.date(2026, 3, 1), dt.datetime(2026, 3, 20, 6, tzinfo=dt.UTC)
    files = [  # (segments, first day, days, value), fetched one hour apart in this order
        (("S1", "S2"), start, 5, 1),
        (("S2", "S3"), start + dt.timedelta(days=3), 5, 2),  # shares S2's days 4-5 with the first
        (("S9",), start, 5, 3),  # shares nothing
        (("S1",), start + dt.timedelta(days=4), 1, 4),  # newest: S1's day 5
    ]
    for hour, (ids, first, days, value) in enumerate(files):
        table = staged(ids, first, days, moment + dt.timedelta(hours=hour), value)
        staging.put(table, SeriesRequest(ids, DayWindow(first, first + dt.timedelta(days=days - 1))))

    load = prepare_load(staging, tmp_path / "no-warehouse-yet.duckdb")
    rows = [row for path in load.files for row in load.read(path).to_pylist()]
    cells = [(row["segment_id"], row["date"]) for row in rows]
    assert len(cells) == len(set(cells)) == 5 + 8 + 5 + 5  # S1 days 1-5, S2 days 1-8, S3 days 4-8, S9 days 1-5
    newest = {(row["segment_id"], row["date"]): row["total_members"] for row in rows}
    day = lambda n: start + dt.timedelta(days=n - 1)  # noqa: E731
    assert newest[("S1", day(5))] == 4 and newest[("S1", day(4))] == 1
    assert newest[("S2", day(3))] == 1 and newest[("S2", day(4))] == newest[("S2", day(5))] == 2
    assert {newest[("S9", day(n))] for n in range(1, 6)} == {3}
    assert load.rows == len(rows) and load.rows_superseded == 0  # nothing stored was newer
