"""The Klaviyo client against the bundled simulator over real HTTP: paging, pacing, retries, errors, secrecy."""

import datetime as dt
import logging
import time

import pytest

from segment_pipeline.klaviyo import (
    KLAVIYO_QUOTA,
    DayWindow,
    KlaviyoAPIError,
    KlaviyoAuthError,
    KlaviyoClient,
    KlaviyoNotFoundError,
    KlaviyoQuotaExhausted,
    KlaviyoResponseError,
    KlaviyoServerError,
    KlaviyoSettings,
    ReportBudget,
    ReportBudgetError,
    series_rows,
)
from segment_pipeline.klaviyo.limits import (
    MAX_DAYS_PER_DAILY_SERIES,
    MAX_SEGMENT_IDS_PER_REPORT,
    SEGMENT_SERIES_PATH,
    SEGMENTS_PATH,
)
from segment_pipeline.klaviyo.settings import checked_api_key

# A key that looks real, so a leak of it anywhere is easy to spot.
SECRET = "pk_live_7f3c9a1e5b2d4f6a8c0e"
FAST = 60.0  # simulator time factor: Klaviyo's 2 report requests a minute become 2 a second


def make_client(sim, sleep=time.sleep, **overrides) -> KlaviyoClient:
    values = dict(
        api_key=SECRET,
        base_url=sim.base_url,
        report_rate_per_minute=2 * FAST,
        backoff_base_seconds=0.05,
        max_attempts=4,
        timeout_seconds=5.0,
    )
    values.update(overrides)
    values["api_key"] = checked_api_key(values["api_key"])
    return KlaviyoClient(KlaviyoSettings(**values), sleep=sleep)


def yesterday(sim) -> dt.date:
    return sim.account.today() - dt.timedelta(days=1)


@pytest.fixture
def sim(make_simulator):
    return make_simulator(api_key=SECRET, segment_count=23, speed=FAST)


def test_every_segment_once_across_many_pages(make_simulator):
    sim = make_simulator(api_key=SECRET, segment_count=95, speed=FAST)
    with make_client(sim) as client:
        segments = client.list_segments()
    assert sorted(s["id"] for s in segments) == sorted(s.id for s in sim.account.segments)
    assert sim.count(path=SEGMENTS_PATH) == 10  # ten pages of at most ten
    by_id = {s.id: s for s in sim.account.segments}
    for resource in segments:
        assert resource["attributes"]["definition"] == by_id[resource["id"]].definition
        assert resource["attributes"]["name"] == by_id[resource["id"]].name
    # every page after the first was the server's own links.next, not a URL we rebuilt
    cursors = [r for r in sim.requests if r.path == SEGMENTS_PATH]
    assert all("page[cursor]" in r.query for r in cursors[1:])


def test_account_and_timezone(sim):
    with make_client(sim) as client:
        account = client.get_account()
    assert (account.id, account.timezone) == (sim.account.account_id, sim.account.timezone)


def test_series_report_matches_the_simulators_truth(sim):
    last = yesterday(sim)
    window = DayWindow(last - dt.timedelta(days=59), last)
    ids = tuple(s.id for s in sim.account.segments)
    with make_client(sim) as client:
        body = client.query_segment_series(ids, window, sim.account.timezone)
    table = series_rows(body, account_id="a", timezone=sim.account.timezone, requested_ids=ids, window=window)
    got = {(r["segment_id"], r["date"]): r for r in table.to_pylist()}
    assert len(got) == len(ids) * 60
    for sid in ids:
        for truth in sim.account.series(sid, window.start, window.end):
            row = got[(sid, truth["date"])]
            assert {k: row[k] for k in truth if k != "date"} == {k: v for k, v in truth.items() if k != "date"}


def test_report_requests_are_paced_to_avoid_429(sim):
    last = yesterday(sim)
    ids = (sim.account.segments[0].id,)
    started = time.monotonic()
    with make_client(sim) as client:
        for i in range(4):
            day = last - dt.timedelta(days=i)
            client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
    elapsed = time.monotonic() - started
    assert sim.count(status=429) == 0
    # 2 a second (Klaviyo's 2 a minute at x60) and at most 1 a second (burst): 3 gaps of at least 1 s
    assert elapsed >= 3.0


def test_429_waits_exactly_retry_after_then_succeeds(sim):
    sim.faults.add(path=SEGMENT_SERIES_PATH, status=429, retry_after=2, times=1)
    slept = []
    day = yesterday(sim)
    with make_client(sim) as client:
        client._sleep = lambda s: (slept.append(s), time.sleep(s))
        body = client.query_segment_series((sim.account.segments[0].id,), DayWindow(day, day), sim.account.timezone)
        assert client.stats.throttled == 1
    assert body["data"]["attributes"]["results"]
    assert 2.0 in slept
    assert sim.count(path=SEGMENT_SERIES_PATH) == 2


def test_retry_after_as_an_http_date_is_waited_out_not_backed_off(sim):
    slept = []
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after=until, times=1)
    day = yesterday(sim)
    with make_client(sim, sleep=slept.append) as client:
        body = client.query_segment_series((sim.account.segments[0].id,), DayWindow(day, day), sim.account.timezone)
        assert client.stats.throttled == 1 and client.stats.retries == 1
        assert client.budget.remaining() == 225 - 2  # a short wait is not a quota block
    assert body["data"]["attributes"]["results"]
    assert sim.requests[-2].response_headers["Retry-After"].endswith(" GMT")
    # the date has whole seconds: the wait is 3-4 s, far above the 0.05-0.4 s backoff of this client
    assert [s for s in slept if 2.5 <= s <= 4.0], slept
    assert not [s for s in slept if s < 2.5 and s > 1.2], slept  # pacing of 2/s waits at most ~0.5 s


def test_a_distant_http_date_records_klaviyos_quota_block(sim, tmp_path):
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)
    sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after=until, times=1)
    day = yesterday(sim)
    ids = (sim.account.segments[0].id,)
    with make_client(sim, ledger_dir=str(tmp_path)) as client:
        with pytest.raises(KlaviyoQuotaExhausted) as caught:
            client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
        assert client.budget.remaining() == 0
    assert caught.value.kind == KLAVIYO_QUOTA
    assert abs(caught.value.retry_at.timestamp() - until.timestamp()) < 1.5
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1


def test_429_without_retry_after_waits_one_steady_window(sim):
    sim.faults.add(path=SEGMENT_SERIES_PATH, status=429, omit_retry_after=True, times=1)
    slept = []
    day = yesterday(sim)
    # the default steady window is Klaviyo's 60 s (the recorder does not really sleep)
    with make_client(sim, sleep=slept.append) as client:
        client.query_segment_series((sim.account.segments[0].id,), DayWindow(day, day), sim.account.timezone)
    assert "Retry-After" not in sim.requests[-2].response_headers
    assert 60.0 in slept and not [s for s in slept if 1.2 < s < 60.0]
    # against the sped-up simulator the window is 60 / speed; really waited this time
    sim.faults.add(path=SEGMENT_SERIES_PATH, status=429, omit_retry_after=True, times=1)
    slept.clear()
    recorded_sleep = lambda s: (slept.append(s), time.sleep(s))  # noqa: E731
    with make_client(sim, sleep=recorded_sleep, steady_window_seconds=60 / FAST) as client:
        client.query_segment_series((sim.account.segments[0].id,), DayWindow(day, day), sim.account.timezone)
        assert client.stats.throttled == 1
    assert 1.0 in slept
    assert sim.count(path=SEGMENT_SERIES_PATH, status=200) == 2


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(dict(status=503, times=2), id="503 twice"),
        pytest.param(dict(status=500, html=True, times=1), id="HTML 500"),
        pytest.param(dict(drop_connection=True, times=1), id="dropped connection"),
        pytest.param(dict(delay_seconds=3.0, times=1), id="timeout"),
    ],
)
def test_transient_failures_are_retried(sim, fault):
    sim.faults.add(path=SEGMENTS_PATH, **fault)
    with make_client(sim, timeout_seconds=1.0) as client:
        segments = client.list_segments()
        assert client.stats.retries >= 1
    assert len(segments) == 23


def test_retries_are_capped_and_say_what_failed(sim):
    sim.faults.add(path=SEGMENTS_PATH, status=503, times=100)
    with make_client(sim, max_attempts=3) as client, pytest.raises(KlaviyoServerError) as caught:
        client.list_segments()
    assert sim.count(path=SEGMENTS_PATH) == 3
    assert "failed 3 times" in str(caught.value) and "503" in str(caught.value)


def test_spent_daily_quota_fails_fast_and_blocks_later_requests(sim, tmp_path):
    sim.exhaust_report_quota()
    day = yesterday(sim)
    ids = (sim.account.segments[0].id,)
    with make_client(sim, ledger_dir=str(tmp_path)) as client:
        started = time.monotonic()
        with pytest.raises(KlaviyoQuotaExhausted) as caught:
            client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
        assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "quota" in message and "re-run" in message
    assert caught.value.retry_after_seconds > 600
    sent = sim.count(path=SEGMENT_SERIES_PATH)
    # another process (a new client on the same ledger directory) does not even try until the quota is back
    with make_client(sim, ledger_dir=str(tmp_path)) as client:
        with pytest.raises(KlaviyoQuotaExhausted):
            client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
    assert sim.count(path=SEGMENT_SERIES_PATH) == sent


def test_local_daily_budget_is_enforced_before_sending(sim, tmp_path):
    day = yesterday(sim)
    ids = (sim.account.segments[0].id,)
    with make_client(sim, ledger_dir=str(tmp_path), report_daily_limit=2) as client:
        client.get_account()
        budget = client.budget
        client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
        with pytest.raises(ReportBudgetError, match="needs 2 report requests but only 1"):
            budget.ensure_available(2)
        client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
        with pytest.raises(KlaviyoQuotaExhausted, match="KLAVIYO_REPORT_DAILY_LIMIT"):
            client.query_segment_series(ids, DayWindow(day, day), sim.account.timezone)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 2
    ledger = tmp_path / f"{sim.account.account_id}.json"
    assert ReportBudget(2, ledger, account_id=sim.account.account_id).remaining() == 0


def test_wrong_key_is_a_401_naming_what_to_check(sim):
    with make_client(sim, api_key="pk_wrong_0000") as client, pytest.raises(KlaviyoAuthError) as caught:
        client.list_segments()
    assert caught.value.status == 401
    assert "KLAVIYO_API_KEY" in str(caught.value) and "segments:read" in str(caught.value)


def test_missing_scope_is_a_403_naming_the_scope(make_simulator):
    sim = make_simulator(api_key=SECRET, segment_count=3, speed=FAST, missing_scopes=("accounts:read",))
    with make_client(sim) as client, pytest.raises(KlaviyoAuthError) as caught:
        client.get_account()
    assert caught.value.status == 403
    assert "accounts:read" in str(caught.value)


def test_refused_report_carries_klaviyos_detail_and_source(sim):
    last = yesterday(sim)
    too_long = DayWindow(last - dt.timedelta(days=60), last)  # 61 days, sent on purpose past the planner
    with make_client(sim) as client, pytest.raises(KlaviyoAPIError) as caught:
        client.query_segment_series((sim.account.segments[0].id,), too_long, sim.account.timezone)
    error = caught.value
    assert error.status == 400 and error.errors
    assert error.errors[0].detail and error.errors[0].source
    assert error.errors[0].detail in str(error)
    assert f"at most {MAX_DAYS_PER_DAILY_SERIES} days and {MAX_SEGMENT_IDS_PER_REPORT} segments" in str(error)


def test_unknown_path_is_a_404(sim):
    with make_client(sim, base_url=sim.base_url + "/nope") as client, pytest.raises(KlaviyoNotFoundError):
        client.list_segments()


def test_a_body_that_is_not_json_is_refused(sim):
    sim.faults.add(path=SEGMENTS_PATH, status=200, raw_body=b"<html>oops</html>", times=1)
    with make_client(sim) as client, pytest.raises(KlaviyoResponseError, match="not JSON"):
        client.list_segments()


def test_misaligned_series_arrays_are_refused_whole(sim):
    def shorten(body):
        stats = body["data"]["attributes"]["results"][0]["statistics"]
        stats["total_members"] = stats["total_members"][:-1]
        return body

    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=shorten, times=1)
    last = yesterday(sim)
    window = DayWindow(last - dt.timedelta(days=4), last)
    ids = tuple(s.id for s in sim.account.segments[:3])
    with make_client(sim) as client:
        body = client.query_segment_series(ids, window, sim.account.timezone)
    with pytest.raises(KlaviyoResponseError, match="misaligned"):
        series_rows(body, account_id="a", timezone=sim.account.timezone, requested_ids=ids, window=window)


def test_the_key_never_appears_in_logs_errors_or_reprs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    sim.faults.add(path=SEGMENTS_PATH, status=503, times=1)
    texts = []
    with make_client(sim) as client:
        client.list_segments()
        texts += [repr(client), repr(client.settings), str(client.settings.api_key), repr(client._http.auth)]
    with make_client(sim, max_attempts=1) as client:
        sim.faults.add(path=SEGMENTS_PATH, status=503, times=1)
        with pytest.raises(KlaviyoServerError) as caught:
            client.list_segments()
        texts += [str(caught.value), repr(caught.value)]
    with make_client(sim, api_key=SECRET + "x") as client, pytest.raises(KlaviyoAuthError) as caught:
        client.get_account()
    texts += [str(caught.value), repr(caught.value)]
    texts += [record.getMessage() for record in caplog.records]
    assert any("retrying" in text for text in texts)  # the retry really was logged
    assert not [text for text in texts if SECRET in text]
    # the simulator received the key, so it was really sent
    assert any(r.status == 200 for r in sim.requests)


def test_missing_key_is_a_clear_configuration_error():
    from segment_pipeline.klaviyo import KlaviyoConfigError
    from segment_pipeline.settings import load_settings, read_api_key

    # the settings load without a key (it is read when a run needs it); the run then says what to set
    account = load_settings({}).accounts["default"]
    with pytest.raises(KlaviyoConfigError, match="KLAVIYO_API_KEY is not set, so account 'default' has no API key"):
        read_api_key(account, {"KLAVIYO_API_KEY": "  "})


def test_values_report_matches_the_truth_over_the_window(sim):
    last = yesterday(sim)
    window = DayWindow(last - dt.timedelta(days=13), last)
    ids = tuple(s.id for s in sim.account.segments[:5])
    with make_client(sim) as client:
        body = client.query_segment_values(ids, window, sim.account.timezone)
    got = {r["groupings"]["segment_id"]: r["statistics"] for r in body["data"]["attributes"]["results"]}
    assert set(got) == set(ids)
    for sid in ids:
        days = sim.account.series(sid, window.start, window.end)
        assert got[sid]["total_members"] == days[-1]["total_members"]
        for flow in ("members_added", "members_removed", "net_members_changed"):
            assert got[sid][flow] == sum(day[flow] for day in days)
