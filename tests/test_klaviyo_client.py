"""The Klaviyo client against the bundled simulator over real HTTP: paging, pacing, retries, errors, secrecy."""

import datetime as dt
import json
import logging
import time

import pytest

from klaviyo_simulator.faults import next_link_to, tags_without_data
from segment_pipeline.config import ConfigError
from segment_pipeline.klaviyo import (
    KLAVIYO_QUOTA,
    DayWindow,
    KlaviyoAPIError,
    KlaviyoAuthError,
    KlaviyoClient,
    KlaviyoConfigError,
    KlaviyoForeignHostError,
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
from segment_pipeline.klaviyo.listing import segments_without_tag_data, tag_ids
from segment_pipeline.klaviyo.settings import checked_api_key
from segment_pipeline.settings import load_settings

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
    from segment_pipeline.settings import read_api_key

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


# -- where the key may go ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["another port", "another host name", "another scheme"])
def test_a_next_link_to_another_origin_is_refused_and_nothing_is_sent_there(sim, foreign_host, where):
    port = sim.base_url.rsplit(":", 1)[1]
    origin = {
        "another port": foreign_host.url,  # another server on the same machine
        "another host name": f"http://localhost:{port}",  # the simulator itself, under another name
        "another scheme": f"https://127.0.0.1:{port}",
    }[where]
    sim.faults.add(path=SEGMENTS_PATH, mutate=next_link_to(origin))
    with make_client(sim) as client, pytest.raises(KlaviyoForeignHostError) as caught:
        client.list_segments()
    message = str(caught.value)
    assert f"page 1 names its next page on {origin}, not on KLAVIYO_BASE_URL's {sim.base_url}" in message
    assert "Nothing was sent" in message and "no segment is marked deleted" in message and "proxy" in message
    assert foreign_host.requests == []
    assert sim.count(path=SEGMENTS_PATH) == 1  # the first page, and nothing after it


def test_a_redirect_is_never_followed_with_the_key(sim, foreign_host):
    sim.faults.add(path=SEGMENTS_PATH, location=f"{foreign_host.url}{SEGMENTS_PATH}")
    with make_client(sim) as client, pytest.raises(KlaviyoResponseError) as caught:
        client.list_segments()
    message = str(caught.value)
    assert f"answered HTTP 307, a redirect to {foreign_host.url}" in message and "never followed" in message
    assert "nothing was sent to 127.0.0.1" in message and "KLAVIYO_BASE_URL" in message
    assert foreign_host.requests == []


def test_a_loopback_base_url_never_goes_through_an_http_proxy(sim, foreign_host, monkeypatch):
    # a proxy on the way to a plain-http address would read the key
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, foreign_host.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with make_client(sim) as client:
        assert len(client.list_segments()) == 23
    assert foreign_host.requests == []


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://klaviyo-proxy.internal:8080", "would send the API key unencrypted to klaviyo-proxy.internal"),
        ("ftp://a.klaviyo.com", "is not an http(s) URL with a host"),
        ("a.klaviyo.com", "is not an http(s) URL with a host"),
        ("https://ops:hunter2@a.klaviyo.com", "holds a user name or password"),
        ("https://a.klaviyo.com/?token=1", "has a query or fragment"),
    ],
)
def test_a_base_url_that_could_leak_the_key_is_refused_before_any_request(url, problem):
    # from the environment, when the code loads
    with pytest.raises(ConfigError) as caught:
        load_settings({"KLAVIYO_API_KEY": SECRET, "KLAVIYO_BASE_URL": url})
    # and settings made in code, whatever made them
    with pytest.raises(KlaviyoConfigError) as made_in_code:
        KlaviyoSettings(api_key=checked_api_key(SECRET), base_url=url)
    for refused in (caught.value, made_in_code.value):
        assert problem in str(refused) and "KLAVIYO_BASE_URL" in str(refused)
        assert "hunter2" not in str(refused)


def test_https_anywhere_and_http_to_this_machine_are_accepted():
    for url in (
        "https://a.klaviyo.com/",
        "https://proxy.example:8443/klaviyo",
        "http://127.0.0.1:8765",
        "http://[::1]:1",
    ):
        assert load_settings({"KLAVIYO_API_KEY": SECRET, "KLAVIYO_BASE_URL": url}).klaviyo.base_url == url.rstrip("/")
        assert KlaviyoSettings(api_key=checked_api_key(SECRET), base_url=url).base_url == url.rstrip("/")
    assert load_settings({"KLAVIYO_API_KEY": SECRET}).klaviyo.base_url == "https://a.klaviyo.com"


# -- Retry-After, bounded --------------------------------------------------------------------------------------


def one_report(client, sim):
    day = yesterday(sim)
    return client.query_segment_series((sim.account.segments[0].id,), DayWindow(day, day), sim.account.timezone)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("99999999999999", id="14 digits"),
        pytest.param("9" * 400, id="400 digits"),
        pytest.param(dt.datetime(9999, 12, 31, tzinfo=dt.UTC), id="a date in 9999"),
    ],
)
def test_an_absurd_retry_after_is_capped_to_the_quota_window_before_it_is_stored(sim, tmp_path, caplog, header):
    sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after=header)
    with make_client(sim, ledger_dir=str(tmp_path)) as client:
        before = time.time()
        with pytest.raises(KlaviyoQuotaExhausted) as caught:
            one_report(client, sim)
        # later reads of the ledger work, and say when the block ends
        assert client.budget.remaining() == 0
        with pytest.raises(ReportBudgetError, match="allows no report request before"):
            client.budget.ensure_available(1)
        free_at = client.budget.available_at(1)
    day = 24 * 60 * 60
    assert before + day <= caught.value.retry_at.timestamp() <= time.time() + day
    assert abs(free_at.timestamp() - caught.value.retry_at.timestamp()) < 1
    stored = json.loads((tmp_path / f"{sim.account.account_id}.json").read_text())
    assert before + day <= stored["blocked_until"] <= time.time() + day
    assert "asks for more than the 86400 s of the report quota window" in caplog.text
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1


@pytest.mark.parametrize("header", ["NaN", "-5", "inf", "1e3", "soon", "Mon, 99 Foo 2026 25:61:00 GMT"])
def test_an_unreadable_retry_after_waits_one_steady_window_and_says_so(sim, caplog, header):
    sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after=header)
    slept = []
    with make_client(sim, sleep=slept.append) as client:
        one_report(client, sim)
        assert client.stats.throttled == 1
    assert 60.0 in slept and max(slept) == 60.0
    assert "is neither a number of seconds nor an HTTP date; waiting one steady window (60 s)" in caplog.text
    assert sim.count(path=SEGMENT_SERIES_PATH, status=200) == 1


def test_every_retry_says_how_long_and_until_when(sim, caplog):
    caplog.set_level(logging.WARNING)
    sim.faults.add(path=SEGMENT_SERIES_PATH, status=429, retry_after=2)
    slept = []
    with make_client(sim, sleep=slept.append) as client:
        one_report(client, sim)
    (line,) = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert "retrying in 2.0 s, at 20" in line and line.endswith("Z")


# -- the listing: what the spec leaves optional, and what it does not allow -----------------------------------


def _each_segment(change):
    def mutate(body):
        for resource in body["data"]:
            change(resource)
        return body

    return mutate


def _without_included_and_tag_data(body):
    body.pop("included", None)
    return tags_without_data()(body)


def _last_page_without_links(body):
    if "next" not in body["links"]:
        del body["links"]
    return body


def _null_next(body):
    body["links"].setdefault("next", None)
    body["meta"] = {}
    return body


def _null_attributes(resource):
    resource["attributes"].update(name=None, definition=None, created=None, updated=None)


@pytest.mark.parametrize(
    "mutate, tags_known",
    [
        pytest.param(tags_without_data(), False, id="tags with only links"),
        pytest.param(_each_segment(lambda r: r.pop("relationships")), False, id="no relationships"),
        pytest.param(_without_included_and_tag_data, False, id="no included"),
        pytest.param(_last_page_without_links, True, id="a last page without links"),
        pytest.param(_null_next, True, id="links.next null, and meta"),
        pytest.param(_each_segment(_null_attributes), True, id="nullable attributes null"),
    ],
)
def test_the_listing_accepts_whatever_the_spec_leaves_optional(sim, mutate, tags_known):
    sim.faults.add(path=SEGMENTS_PATH, mutate=mutate, times=None)
    with make_client(sim) as client:
        resources, tag_names = client.list_segments_with_tags()
    assert sorted(r["id"] for r in resources) == sorted(s.id for s in sim.account.segments)
    by_id = {s.id: s for s in sim.account.segments}
    if tags_known:
        assert {r["id"]: sorted(tag_names[t] for t in tag_ids(r)) for r in resources} == {
            sid: sorted(t.name for t in s.tags) for sid, s in by_id.items()
        }
    else:  # unknown, not empty: the stored tags are kept
        assert [tag_ids(r) for r in resources] == [None] * 23 and segments_without_tag_data(resources) == 23


def _first_segment(change):
    def mutate(body):
        change(body["data"][0])
        return body

    return mutate


@pytest.mark.parametrize(
    "mutate, problem",
    [
        pytest.param(lambda b: {**b, "data": {"id": "x"}}, "has no `data` array", id="data is an object"),
        pytest.param(_first_segment(lambda r: r.update(type="profile")), "is a 'profile', not a segment", id="type"),
        pytest.param(_first_segment(lambda r: r.update(id=42)), "has no string id", id="id not a string"),
        pytest.param(
            _first_segment(lambda r: r["relationships"]["tags"].update(data="t1")),
            "relationships.tags.data is not an array",
            id="tag data not an array",
        ),
        pytest.param(
            _first_segment(lambda r: r["relationships"]["tags"].update(data=[{"type": "tag"}])),
            "relationships.tags.data holds",
            id="tag without id",
        ),
        pytest.param(lambda b: {**b, "included": {}}, "`included` is not an array", id="included not an array"),
        pytest.param(lambda b: {**b, "links": "next"}, "`links` is not an object", id="links not an object"),
        pytest.param(
            lambda b: {**b, "links": {"self": "x", "next": "/api/segments?page%5Bcursor%5D=a"}},
            "is not a full http(s) URL",
            id="relative next",
        ),
        pytest.param(
            _first_segment(lambda r: r["relationships"]["tags"].update(data=[{"type": "tag", "id": "nope"}])),
            "lists tags nope that are not among the included tags",
            id="tag not included",
        ),
    ],
)
def test_a_malformed_page_abandons_the_whole_listing(sim, mutate, problem):
    sim.faults.add(path=SEGMENTS_PATH, mutate=mutate)
    with make_client(sim) as client, pytest.raises(KlaviyoResponseError) as caught:
        client.list_segments_with_tags()
    message = str(caught.value)
    assert problem in message and "none of it is used" in message


def test_no_request_leaves_for_another_origin_whatever_asks_for_it(sim, foreign_host):
    with make_client(sim) as client:
        with pytest.raises(KlaviyoForeignHostError, match="goes only to KLAVIYO_BASE_URL's http://127.0.0.1"):
            client._request("segments", "GET", f"{foreign_host.url}{SEGMENTS_PATH}")
        assert client.stats.sent_for("segments") == 0
    assert foreign_host.requests == []
