"""fetch_series against the simulator: incomplete responses are errors, a segment deleted meanwhile is not."""

import datetime as dt

import pytest

from klaviyo_simulator.faults import drop_day, drop_segment
from segment_pipeline.klaviyo import (
    DayWindow,
    IncompleteSeriesResponse,
    KlaviyoClient,
    KlaviyoSettings,
    SeriesRequest,
    fetch_series,
)
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH, SEGMENTS_PATH
from segment_pipeline.klaviyo.settings import ApiKey

KEY = "pk_fetch_test_key"
FAST = 60.0


@pytest.fixture
def sim(make_simulator):
    return make_simulator(api_key=KEY, segment_count=4, speed=FAST)


@pytest.fixture
def client(sim):
    settings = KlaviyoSettings(
        api_key=ApiKey(KEY), base_url=sim.base_url, report_rate_per_minute=2 * FAST, timeout_seconds=5.0
    )
    with KlaviyoClient(settings) as client:
        yield client


def request_for(sim, days=5) -> SeriesRequest:
    last = sim.account.today() - dt.timedelta(days=1)
    return SeriesRequest(tuple(s.id for s in sim.account.segments), DayWindow(last - dt.timedelta(days=days - 1), last))


def truth(sim, segment_ids, window):
    return {
        (sid, row["date"]): {k: v for k, v in row.items() if k != "date"}
        for sid in segment_ids
        for row in sim.account.series(sid, window.start, window.end)
    }


def rows(table):
    return {
        (r["segment_id"], r["date"]): {k: r[k] for k in r if k not in ("segment_id", "date", "account_id")}
        for r in table.to_pylist()
    }


def test_a_complete_response_is_every_segment_and_day(sim, client):
    request = request_for(sim)
    response = fetch_series(client, request, client.get_account())
    assert response.deleted_segment_ids == ()
    assert rows(response.table) == truth(sim, request.segment_ids, request.window)


@pytest.mark.parametrize("position", [0, 2, -1], ids=["first day", "a middle day", "last day"])
def test_a_response_missing_a_day_is_an_error_naming_it(sim, client, position):
    request = request_for(sim)
    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=drop_day(position), times=1)
    with pytest.raises(IncompleteSeriesResponse) as caught:
        fetch_series(client, request, client.get_account())
    missing = request.window.dates()[position]
    assert caught.value.missing_days == (missing,)
    assert missing.isoformat() in str(caught.value) and "None of it was kept" in str(caught.value)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1  # not retried: the next answer would cost another request


def test_a_response_missing_a_segment_that_still_exists_is_an_error_naming_it(sim, client):
    request = request_for(sim)
    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=drop_segment(1), times=1)
    with pytest.raises(IncompleteSeriesResponse) as caught:
        fetch_series(client, request, client.get_account())
    missing = request.segment_ids[1]
    assert caught.value.missing_segment_ids == (missing,)
    assert missing in str(caught.value)
    # it was looked up, and it is there: Klaviyo owed us its rows
    assert sim.count(method="GET", path=f"{SEGMENTS_PATH}/{missing}", status=200) == 1


def test_a_segment_deleted_after_the_listing_keeps_the_others_and_is_reported(sim, client):
    request = request_for(sim)
    deleted = request.segment_ids[2]
    sim.faults.add(path=SEGMENT_SERIES_PATH, delete_segment_ids=(deleted,), times=1)
    response = fetch_series(client, request, client.get_account())
    assert response.deleted_segment_ids == (deleted,)
    others = tuple(sid for sid in request.segment_ids if sid != deleted)
    assert rows(response.table) == truth(sim, others, request.window)
    assert sim.count(method="GET", path=f"{SEGMENTS_PATH}/{deleted}", status=404) == 1


def test_a_deleted_segment_does_not_excuse_a_missing_day(sim, client):
    request = request_for(sim)
    sim.faults.add(path=SEGMENT_SERIES_PATH, delete_segment_ids=(request.segment_ids[0],), mutate=drop_day(0), times=1)
    with pytest.raises(IncompleteSeriesResponse) as caught:
        fetch_series(client, request, client.get_account())
    assert caught.value.missing_days == (request.window.start,)


def test_every_segment_deleted_gives_no_rows_and_names_them_all(sim, client):
    request = request_for(sim, days=2)
    sim.faults.add(path=SEGMENT_SERIES_PATH, delete_segment_ids=request.segment_ids, times=1)
    response = fetch_series(client, request, client.get_account())
    assert response.table.num_rows == 0
    assert response.deleted_segment_ids == request.segment_ids


def test_the_series_asset_keeps_the_others_when_a_segment_was_deleted_after_the_listing(
    make_simulator, tmp_path, monkeypatch
):
    from tests.pipeline_helpers import API_KEY, SEGMENTS, SERIES, materialize, query, range_tags

    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    ids = [s.id for s in sim.account.segments]
    sim.account.delete(ids[0])  # after the listing the plan is made from
    last = sim.account.today() - dt.timedelta(days=30)
    first = last - dt.timedelta(days=2)
    materialize([SERIES], sim, tmp_path, tags=range_tags(first, last))
    stored = query(
        tmp_path / "warehouse.duckdb", "select segment_id, count(*) from klaviyo.segment_series_daily group by 1"
    )
    assert dict(stored) == {ids[1]: 3, ids[2]: 3}
    assert sim.count(method="GET", path=f"{SEGMENTS_PATH}/{ids[0]}", status=404) == 1
