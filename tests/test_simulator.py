"""The Klaviyo simulator over real HTTP: Klaviyo's rules, consistent data, rate limits, faults, CLI, contract."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import klaviyo_simulator
from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig, command
from segment_pipeline.klaviyo.limits import (
    ACCOUNTS_PATH,
    API_REVISION,
    MAX_DAYS_PER_DAILY_SERIES,
    MAX_HISTORY_DAYS,
    MAX_SEGMENT_IDS_PER_REPORT,
    REPORTING_DATA_FLOOR,
    SEGMENT_SERIES_PATH,
    SEGMENT_VALUES_PATH,
    SEGMENTS_PAGE_SIZE,
    SEGMENTS_PATH,
    SERIES_STATISTICS,
)
from tests.openapi_contract import ContractError, validate_response
from tests.simulator_fixtures import TEST_API_KEY, contract_problems

# A fixed "today" a little after a DST change in US/Eastern (2025-03-09), so windows can straddle it.
TODAY = dt.date(2025, 6, 15)
FAST = 1_000_000.0  # a day of rate-limit windows passes in 0.09 s: tests that do not study limits never hit them


def client(
    sim: KlaviyoSimulator, *, key: str | None = TEST_API_KEY, revision: str | None = API_REVISION
) -> httpx.Client:
    headers = {"Accept": "application/vnd.api+json"}
    if key is not None:
        headers["Authorization"] = f"Klaviyo-API-Key {key}"
    if revision is not None:
        headers["revision"] = revision
    return httpx.Client(base_url=sim.base_url, headers=headers, timeout=10.0)


def day_time(day: dt.date, clock: str = "00:00:00", offset: str = "+00:00") -> str:
    return f"{day.isoformat()}T{clock}{offset}"


def series_body(
    ids: list[str] | None,
    start: Any,
    end: Any = None,
    *,
    statistics: list[str] | None = None,
    interval: str = "daily",
    report_type: str = "segment-series-report",
) -> dict[str, Any]:
    timeframe = (
        start
        if isinstance(start, dict)
        else {
            "start": start if isinstance(start, str) else day_time(start),
            "end": end if isinstance(end, str) else day_time(end),
        }
    )
    attributes: dict[str, Any] = {"statistics": statistics or list(SERIES_STATISTICS), "timeframe": timeframe}
    if report_type == "segment-series-report":
        attributes["interval"] = interval
    if ids is not None:
        attributes["filter"] = f"any(segment_id,{json.dumps(ids)})"
    return {"data": {"type": report_type, "attributes": attributes}}


def post(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    return http.post(path, json=body, headers={"Content-Type": "application/vnd.api+json"})


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    errors = response.json()["errors"]
    assert len(errors) == 1 and errors[0]["status"] == response.status_code
    assert {"id", "code", "title", "detail", "source", "links", "meta"} <= set(errors[0])
    return errors[0]


@pytest.fixture
def sim(make_simulator):
    return make_simulator(segment_count=30, speed=FAST, today=TODAY)


# -- the simulator's own rules ---------------------------------------------------------------------------------

# facts the simulator keeps its own copy of (klaviyo_simulator.rules), and the pipeline too (klaviyo.limits)
SHARED_FACTS = (
    "JSON_API_MEDIA_TYPE",
    "SEGMENTS_PATH",
    "ACCOUNTS_PATH",
    "SEGMENT_SERIES_PATH",
    "SEGMENT_VALUES_PATH",
    "SEGMENTS_PAGE_SIZE",
    "SERIES_STATISTICS",
    "MAX_DAYS_PER_DAILY_SERIES",
    "MAX_SEGMENT_IDS_PER_REPORT",
    "REPORTING_DATA_FLOOR",
    "MAX_HISTORY_DAYS",
    "SCOPE_SEGMENTS",
    "SCOPE_ACCOUNTS",
    "SCOPE_TAGS",
    "BURST_WINDOW_SECONDS",
    "STEADY_WINDOW_SECONDS",
    "REPORT_QUOTA_WINDOW_SECONDS",
)
SHARED_RATE_LIMITS = (
    "SEGMENTS_RATE_LIMIT",
    "ACCOUNTS_RATE_LIMIT",
    "SEGMENTS_INCLUDE_RATE_LIMIT",
    "REPORTS_RATE_LIMIT",
)


def _as_spec_ratelimit(limit) -> dict[str, str]:
    """A rate limit written the way the spec's `x-klaviyo-ratelimit` writes it."""
    written = {"burst": f"{limit.per_second}/s", "steady": f"{limit.per_minute}/m"}
    return {**written, "daily": f"{limit.per_day}/d"} if limit.per_day is not None else written


def test_the_simulators_own_rules_agree_with_the_pipelines_and_with_klaviyos_spec(openapi_contract):
    from klaviyo_simulator import rules
    from segment_pipeline.klaviyo import limits

    for name in SHARED_FACTS:
        assert getattr(rules, name) == getattr(limits, name), name
    for name in SHARED_RATE_LIMITS:
        ours, theirs = getattr(rules, name), getattr(limits, name)
        assert (ours.per_second, ours.per_minute, ours.per_day) == (
            theirs.per_second,
            theirs.per_minute,
            theirs.per_day,
        ), name

    # and both agree with Klaviyo's document, read here rather than copied
    paths = openapi_contract.spec["paths"]

    def ratelimit(path: str, method: str) -> dict:
        return paths[path][method]["x-klaviyo-ratelimit"]

    assert ratelimit(rules.SEGMENTS_PATH, "get") == _as_spec_ratelimit(rules.SEGMENTS_RATE_LIMIT)
    assert ratelimit("/api/segments/{id}/tags", "get") == _as_spec_ratelimit(rules.SEGMENTS_INCLUDE_RATE_LIMIT)
    assert ratelimit(rules.ACCOUNTS_PATH, "get") == _as_spec_ratelimit(rules.ACCOUNTS_RATE_LIMIT)
    assert ratelimit(rules.SEGMENT_SERIES_PATH, "post") == _as_spec_ratelimit(rules.REPORTS_RATE_LIMIT)
    assert ratelimit(rules.SEGMENT_VALUES_PATH, "post") == _as_spec_ratelimit(rules.REPORTS_RATE_LIMIT)
    (page_size,) = [p for p in paths[rules.SEGMENTS_PATH]["get"]["parameters"] if p.get("name") == "page[size]"]
    assert page_size["schema"]["maximum"] == page_size["schema"]["default"] == rules.SEGMENTS_PAGE_SIZE
    series = openapi_contract.spec["components"]["schemas"]["SegmentSeriesRequestDTOResourceObject"]
    attributes = series["properties"]["attributes"]["properties"]
    assert set(attributes["statistics"]["items"]["enum"]) == set(rules.SERIES_STATISTICS)
    assert (
        f"If daily is used, the timeframe cannot be longer than {rules.MAX_DAYS_PER_DAILY_SERIES} days"
        in (attributes["interval"]["description"])
    )
    assert f"Max of {rules.MAX_SEGMENT_IDS_PER_REPORT} " in attributes["filter"]["description"]
    floor = rules.REPORTING_DATA_FLOOR
    assert (
        f"Data is unavailable before {floor:%B} {floor.day}st, {floor.year}" in attributes["timeframe"]["description"]
    )
    assert rules.MAX_HISTORY_DAYS == 365 and "(Max length: 1 year)" in attributes["timeframe"]["description"]


def test_the_simulator_imports_nothing_of_the_pipeline():
    # a fresh interpreter: this test process has the pipeline imported already
    code = (
        "import sys, klaviyo_simulator, klaviyo_simulator.command, klaviyo_simulator.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'segment_pipeline'))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"
    # nor lazily, inside a function
    importing = re.compile(r"^\s*(from|import)\s+segment_pipeline\b", re.MULTILINE)
    sources = Path(klaviyo_simulator.__file__).parent.glob("*.py")
    assert not [p.name for p in sources if importing.search(p.read_text(encoding="utf-8"))]


# -- auth, revision, scopes, paths -----------------------------------------------------------------------------


def test_the_account_reports_its_id_and_timezone(sim):
    with client(sim) as http:
        response = http.get(ACCOUNTS_PATH)
    assert response.status_code == 200
    (account,) = response.json()["data"]
    assert (account["id"], account["attributes"]["timezone"]) == (sim.account.account_id, "US/Eastern")
    assert account["attributes"]["public_api_key"] == sim.account.account_id
    assert response.headers["RateLimit-Limit"] == "15"


def test_the_default_account_id_is_derived_from_the_seed():
    assert (
        SimulatorConfig(seed=3).account_id == SimulatorConfig(seed=3).account_id != SimulatorConfig(seed=4).account_id
    )
    assert SimulatorConfig(account_id="XyZ123").account_id == "XyZ123"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Klaviyo-API-Key wrong-key", id="wrong key"),
        pytest.param(f"Bearer {TEST_API_KEY}", id="wrong scheme"),
    ],
)
def test_requests_without_the_right_key_are_401(sim, authorization):
    headers = {"revision": API_REVISION}
    if authorization:
        headers["Authorization"] = authorization
    response = httpx.get(sim.base_url + SEGMENTS_PATH, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.parametrize("revision", [None, "2026-13-45", "latest", "2026-07-15-pre"])
def test_a_missing_or_malformed_revision_is_400(sim, revision):
    with client(sim, revision=revision) as http:
        response = http.get(SEGMENTS_PATH)
    assert response.status_code == 400
    assert error_of(response)["source"] == {"parameter": "revision"}


def test_a_beta_revision_suffix_is_accepted(sim):
    with client(sim, revision="2026-07-15.pre") as http:
        assert http.get(SEGMENTS_PATH).status_code == 200


def test_a_missing_scope_is_403_naming_it(make_simulator):
    sim = make_simulator(missing_scopes=("accounts:read",), speed=FAST)
    with client(sim) as http:
        refused = http.get(ACCOUNTS_PATH)
        allowed = http.get(SEGMENTS_PATH)
    assert refused.status_code == 403
    assert "accounts:read" in error_of(refused)["detail"]
    assert allowed.status_code == 200


def test_paths_are_exact_trailing_slashes_are_404_and_wrong_methods_405(sim):
    with client(sim) as http:
        assert http.get(SEGMENTS_PATH + "/").status_code == 404
        assert http.get(ACCOUNTS_PATH + "/").status_code == 404
        assert post(http, SEGMENT_SERIES_PATH + "/", {}).status_code == 404
        assert http.get("/api/lists").status_code == 404
        wrong_method = http.get(SEGMENT_SERIES_PATH)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
    assert "trailing slash" in error_of(http_get_404(sim))["detail"]


def http_get_404(sim):
    with client(sim) as http:
        return http.get(SEGMENTS_PATH + "/")


def test_the_log_never_holds_the_key(sim):
    with client(sim) as http:
        http.get(SEGMENTS_PATH)
    (entry,) = sim.requests
    assert entry.headers["authorization"] == "Klaviyo-API-Key REDACTED"
    assert TEST_API_KEY not in repr(entry)


# -- segments --------------------------------------------------------------------------------------------------


def collect_pages(http: httpx.Client, first_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data, links = [], []
    url: str | None = first_url
    while url:
        response = http.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        data += body["data"]
        links.append(body["links"])
        url = body["links"].get("next")
    return data, links


def test_pagination_reaches_every_segment_exactly_once(make_simulator):
    sim = make_simulator(segment_count=95, speed=FAST)
    with client(sim) as http:
        data, links = collect_pages(http, SEGMENTS_PATH)
        small_pages, _ = collect_pages(http, f"{SEGMENTS_PATH}?page[size]=7")
    assert [s["id"] for s in data] == [s.id for s in sim.account.segments]
    assert len(links) == 10  # ten per page
    assert "prev" not in links[0] and all("prev" in page for page in links[1:])
    assert "next" not in links[-1]
    assert all(page["next"].startswith(sim.base_url + SEGMENTS_PATH + "?") for page in links[:-1])
    assert [s["id"] for s in small_pages] == [s.id for s in sim.account.segments]
    assert sim.count(path=SEGMENTS_PATH, status=200) == 10 + 14


def test_prev_links_walk_back_to_the_same_pages(make_simulator):
    sim = make_simulator(segment_count=25, speed=FAST)
    with client(sim) as http:
        first = http.get(SEGMENTS_PATH).json()
        second = http.get(first["links"]["next"]).json()
        back = http.get(second["links"]["prev"]).json()
    assert [s["id"] for s in back["data"]] == [s["id"] for s in first["data"]]


def test_a_segment_deleted_between_pages_does_not_shift_the_listing(make_simulator):
    sim = make_simulator(segment_count=25, speed=FAST)
    with client(sim) as http:
        first = http.get(SEGMENTS_PATH).json()
        sim.account.delete(first["data"][3]["id"])
        rest, _ = collect_pages(http, first["links"]["next"])
    seen = [s["id"] for s in first["data"] + rest]
    assert len(seen) == len(set(seen)) == 25


@pytest.mark.parametrize("size", ["0", str(SEGMENTS_PAGE_SIZE + 1), "-3", "ten"])
def test_page_sizes_outside_1_to_10_are_400(sim, size):
    with client(sim) as http:
        response = http.get(SEGMENTS_PATH, params={"page[size]": size})
    assert response.status_code == 400
    assert error_of(response)["source"] == {"parameter": "page[size]"}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"page[cursor]": "not-a-cursor"}, id="bad cursor"),
        pytest.param({"sort": "size"}, id="bad sort"),
        pytest.param({"filter": "equals(size,1)"}, id="unknown filter field"),
        pytest.param({"filter": "less-than(updated,2024-01-01T00:00:00Z)"}, id="operator not allowed"),
        pytest.param({"filter": 'equals(name,"x"'}, id="malformed filter"),
        pytest.param({"pagesize": "5"}, id="unknown parameter"),
        pytest.param({"fields[segment]": "name,size"}, id="unknown field"),
    ],
)
def test_bad_listing_parameters_are_400_naming_the_parameter(sim, params):
    with client(sim) as http:
        response = http.get(SEGMENTS_PATH, params=params)
    assert response.status_code == 400
    assert error_of(response)["source"]["parameter"] in params


def test_listing_filters_and_sorts(sim):
    segments = sim.account.segments
    quoted = next(s for s in segments if '"' in s.name)
    with client(sim) as http:
        by_name = http.get(SEGMENTS_PATH, params={"filter": f"equals(name,{json.dumps(quoted.name)})"}).json()
        ids = [segments[0].id, segments[5].id]
        by_ids = http.get(SEGMENTS_PATH, params={"filter": f"any(id,{json.dumps(ids)})"}).json()
        inactive = http.get(SEGMENTS_PATH, params={"filter": "equals(is_active,false)"}).json()
        newest_first, _ = collect_pages(http, f"{SEGMENTS_PATH}?sort=-created")
        since = segments[10].updated.isoformat()
        updated_since, _ = collect_pages(http, f"{SEGMENTS_PATH}?filter=greater-than(updated,{since})&sort=updated")
    assert [s["id"] for s in by_name["data"]] == [quoted.id]
    assert {s["id"] for s in by_ids["data"]} == set(ids)
    assert inactive["data"] and all(s["attributes"]["is_active"] is False for s in inactive["data"])
    assert [s["id"] for s in newest_first] == [s.id for s in reversed(segments)]
    expected = sorted((s for s in segments if s.updated > segments[10].updated), key=lambda s: (s.updated, s.id))
    assert [s["id"] for s in updated_since] == [s.id for s in expected]


def test_a_single_segment_and_its_profile_count(sim):
    segment = sim.account.segments[0]
    with client(sim) as http:
        response = http.get(f"{SEGMENTS_PATH}/{segment.id}", params={"additional-fields[segment]": "profile_count"})
        missing = http.get(f"{SEGMENTS_PATH}/nope12")
    body = response.json()
    assert body["data"]["id"] == segment.id
    assert (
        body["data"]["attributes"]["profile_count"] == sim.account.series(segment.id, TODAY, TODAY)[0]["total_members"]
    )
    assert missing.status_code == 404


def test_segments_have_awkward_names_and_several_condition_types(sim):
    names = [s.name for s in sim.account.segments]
    assert any('"' in n for n in names) and any("'" in n for n in names)
    assert any(any(ord(c) > 0xFFFF for c in n) for n in names)  # emoji
    assert any("ã" in n or "é" in n or "ü" in n for n in names)  # accents
    types = {c["type"] for s in sim.account.segments for g in s.definition["condition_groups"] for c in g["conditions"]}
    assert len(types) >= 6
    assert all(len(s.id) == 6 and s.id.isalnum() for s in sim.account.segments)
    with client(sim) as http:
        listed, _ = collect_pages(http, SEGMENTS_PATH)
    assert {s["attributes"]["name"] for s in listed} == set(names)


def test_edits_renames_and_deletes_show_up_in_the_api(sim):
    first, second, third = sim.account.segments[:3]
    before = (first.definition, first.updated)
    new_definition = sim.account.edit_definition(first.id)
    sim.account.rename(second.id, "Renamed 'segment' ✨")
    sim.account.delete(third.id)
    assert new_definition != before[0] and first.updated > before[1]
    assert sim.account.edit_definition(first.id) != new_definition  # each edit changes it again
    with client(sim) as http:
        listed = {s["id"]: s for s in collect_pages(http, SEGMENTS_PATH)[0]}
        report = post(http, SEGMENT_SERIES_PATH, series_body([third.id, second.id], TODAY, TODAY)).json()
    assert third.id not in listed
    assert listed[second.id]["attributes"]["name"] == "Renamed 'segment' ✨"
    assert listed[first.id]["attributes"]["definition"] == first.definition
    assert [r["groupings"]["segment_id"] for r in report["data"]["attributes"]["results"]] == [second.id]


def test_edits_are_deterministic():
    a = KlaviyoSimulator(SimulatorConfig(segment_count=4, seed=11, today=TODAY)).account
    b = KlaviyoSimulator(SimulatorConfig(segment_count=4, seed=11, today=TODAY)).account
    assert [s.definition for s in a.segments] == [s.definition for s in b.segments]
    assert a.edit_definition(a.segments[1].id) == b.edit_definition(b.segments[1].id)


# -- series rules ----------------------------------------------------------------------------------------------


def test_sixty_days_are_served_with_both_ends_included(sim):
    ids = [s.id for s in sim.account.segments[:3]]
    end = TODAY - dt.timedelta(days=1)
    start = end - dt.timedelta(days=MAX_DAYS_PER_DAILY_SERIES - 1)
    with client(sim) as http:
        response = post(http, SEGMENT_SERIES_PATH, series_body(ids, start, end))
    assert response.status_code == 200
    attributes = response.json()["data"]["attributes"]
    assert len(attributes["date_times"]) == MAX_DAYS_PER_DAILY_SERIES
    assert attributes["date_times"][0].startswith(start.isoformat())
    assert attributes["date_times"][-1].startswith(end.isoformat())
    assert [r["groupings"]["segment_id"] for r in attributes["results"]] == ids
    assert all(len(values) == 60 for r in attributes["results"] for values in r["statistics"].values())


def test_sixty_one_days_are_refused(sim):
    end = TODAY - dt.timedelta(days=1)
    start = end - dt.timedelta(days=MAX_DAYS_PER_DAILY_SERIES)
    with client(sim) as http:
        response = post(http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], start, end))
    assert response.status_code == 400
    error = error_of(response)
    assert "60 days" in error["detail"] and error["source"] == {"pointer": "/data/attributes/timeframe"}


def test_nothing_before_june_2023(make_simulator):
    sim = make_simulator(speed=FAST, today=dt.date(2024, 3, 1))
    segment_id = sim.account.segments[0].id
    floor = REPORTING_DATA_FLOOR
    with client(sim) as http:
        refused = post(
            http,
            SEGMENT_SERIES_PATH,
            series_body([segment_id], floor - dt.timedelta(days=1), floor + dt.timedelta(days=5)),
        )
        served = post(http, SEGMENT_SERIES_PATH, series_body([segment_id], floor, floor + dt.timedelta(days=59)))
    error = error_of(refused)
    assert error["detail"].startswith("Cannot query for segment data before June 1st, 2023")
    assert error["source"] == {"pointer": "/data/attributes/timeframe/start"}
    assert served.status_code == 200 and len(served.json()["data"]["attributes"]["date_times"]) == 60


def test_nothing_more_than_a_year_back(sim):
    segment_id = sim.account.segments[0].id
    oldest = TODAY - dt.timedelta(days=MAX_HISTORY_DAYS)
    with client(sim) as http:
        served = post(http, SEGMENT_SERIES_PATH, series_body([segment_id], oldest, oldest + dt.timedelta(days=10)))
        refused = post(http, SEGMENT_SERIES_PATH, series_body([segment_id], oldest - dt.timedelta(days=1), oldest))
    assert served.status_code == 200
    error = error_of(refused)
    assert "one year" in error["detail"] and error["source"] == {"pointer": "/data/attributes/timeframe/start"}


def test_offsets_are_ignored_the_written_date_is_the_account_day(sim):
    segment_id = sim.account.segments[0].id
    day = dt.date(2025, 5, 1)
    windows = [
        (day_time(day, "23:30:00", "-08:00"), day_time(day, "00:00:00", "+14:00")),
        (day_time(day, "00:00:00", "Z"), day_time(day, "23:59:59", "+05:30")),
    ]
    with client(sim) as http:
        responses = [post(http, SEGMENT_SERIES_PATH, series_body([segment_id], s, e)).json() for s, e in windows]
    for body in responses:
        assert body["data"]["attributes"]["date_times"] == ["2025-05-01T00:00:00-04:00"]
    assert responses[0]["data"]["attributes"]["results"] == responses[1]["data"]["attributes"]["results"]


@pytest.mark.parametrize(
    "timeframe, pointer",
    [
        pytest.param(
            {"start": "2025-05-01T00:00:00", "end": "2025-05-02T00:00:00+00:00"},
            "/data/attributes/timeframe/start",
            id="no offset",
        ),
        pytest.param({"start": "2025-05-01", "end": "2025-05-02"}, "/data/attributes/timeframe/start", id="date only"),
        pytest.param(
            {"start": "2025-05-03T00:00:00Z", "end": "2025-05-02T00:00:00Z"},
            "/data/attributes/timeframe/end",
            id="end before start",
        ),
        pytest.param({"start": "2025-05-01T00:00:00Z"}, "/data/attributes/timeframe/end", id="no end"),
        pytest.param(
            {"key": "last_7_days", "start": "2025-05-01T00:00:00Z", "end": "2025-05-02T00:00:00Z"},
            "/data/attributes/timeframe",
            id="both forms",
        ),
        pytest.param({"key": "last_52_weeks"}, "/data/attributes/timeframe/key", id="unknown key"),
        pytest.param({"key": "last_90_days"}, "/data/attributes/timeframe", id="key longer than 60 days"),
    ],
)
def test_bad_timeframes_are_400_with_a_pointer(sim, timeframe, pointer):
    with client(sim) as http:
        response = post(http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], timeframe))
    assert response.status_code == 400
    assert error_of(response)["source"] == {"pointer": pointer}


def test_timeframe_keys_run_through_today(sim):
    with client(sim) as http:
        week = post(http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], {"key": "last_7_days"})).json()
        today = post(http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], {"key": "today"})).json()
    dates = [d[:10] for d in week["data"]["attributes"]["date_times"]]
    assert dates == [(TODAY - dt.timedelta(days=7 - i)).isoformat() for i in range(8)]
    assert [d[:10] for d in today["data"]["attributes"]["date_times"]] == [TODAY.isoformat()]


def test_days_after_today_are_not_returned(sim):
    with client(sim) as http:
        body = post(
            http,
            SEGMENT_SERIES_PATH,
            series_body([sim.account.segments[0].id], TODAY - dt.timedelta(days=2), TODAY + dt.timedelta(days=20)),
        ).json()
    assert [d[:10] for d in body["data"]["attributes"]["date_times"]] == [
        (TODAY - dt.timedelta(days=2)).isoformat(),
        (TODAY - dt.timedelta(days=1)).isoformat(),
        TODAY.isoformat(),
    ]
    assert len(body["data"]["attributes"]["results"][0]["statistics"]["total_members"]) == 3


@pytest.mark.parametrize(
    "filter_text, fragment",
    [
        pytest.param(
            "any(segment_id,[" + ",".join(f'"id{i:04d}"' for i in range(MAX_SEGMENT_IDS_PER_REPORT + 1)) + "])",
            "100",
            id="101 ids",
        ),
        pytest.param('any(segment_id,["abc"]', "filter", id="unbalanced"),
        pytest.param("equals(segment_id,abc)", "quote", id="unquoted id"),
        pytest.param('equals(list_id,"abc")', "segment_id", id="wrong field"),
        pytest.param('contains(segment_id,"abc")', "equals, any", id="wrong operator"),
        pytest.param('equals(segment_id,"a"),equals(segment_id,"b")', "one filter", id="two filters"),
        pytest.param("any(segment_id,[])", "non-empty", id="empty list"),
    ],
)
def test_bad_report_filters_are_400(sim, filter_text, fragment):
    body = series_body(None, TODAY - dt.timedelta(days=1), TODAY)
    body["data"]["attributes"]["filter"] = filter_text
    with client(sim) as http:
        response = post(http, SEGMENT_SERIES_PATH, body)
    assert response.status_code == 400
    error = error_of(response)
    assert fragment in error["detail"] and error["source"] == {"pointer": "/data/attributes/filter"}


def test_a_hundred_ids_are_fine_and_unknown_ids_are_left_out(make_simulator):
    sim = make_simulator(segment_count=120, speed=FAST, today=TODAY)
    ids = [s.id for s in sim.account.segments[:99]] + ["zzzzzz"]
    with client(sim) as http:
        body = post(http, SEGMENT_SERIES_PATH, series_body(ids, TODAY, TODAY, statistics=["total_members"])).json()
        single = post(
            http,
            SEGMENT_SERIES_PATH,
            {
                "data": {
                    "type": "segment-series-report",
                    "attributes": {
                        "statistics": ["members_added"],
                        "interval": "daily",
                        "timeframe": {"key": "yesterday"},
                        "filter": f'equals(segment_id,"{ids[0]}")',
                    },
                }
            },
        ).json()
    results = body["data"]["attributes"]["results"]
    assert [r["groupings"]["segment_id"] for r in results] == ids[:99]
    assert all(set(r["statistics"]) == {"total_members"} for r in results)
    assert [r["groupings"]["segment_id"] for r in single["data"]["attributes"]["results"]] == [ids[0]]


@pytest.mark.parametrize(
    "change, pointer, fragment",
    [
        pytest.param(
            {"interval": "weekly"}, "/data/attributes/interval", "simulator supports only the daily", id="weekly"
        ),
        pytest.param(
            {"interval": "yearly"}, "/data/attributes/interval", "not a valid interval", id="unknown interval"
        ),
        pytest.param({"interval": None}, "/data/attributes/interval", "required", id="no interval"),
        pytest.param({"statistics": []}, "/data/attributes/statistics", "required", id="no statistics"),
        pytest.param(
            {"statistics": ["total_members", "open_rate"]},
            "/data/attributes/statistics",
            "open_rate",
            id="unknown statistic",
        ),
        pytest.param(
            {"group_by": ["segment_id"]}, "/data/attributes/group_by", "not a valid attribute", id="extra attribute"
        ),
    ],
)
def test_bad_report_attributes_are_400(sim, change, pointer, fragment):
    body = series_body([sim.account.segments[0].id], TODAY - dt.timedelta(days=1), TODAY)
    attributes = body["data"]["attributes"]
    for name, value in change.items():
        if value is None:
            del attributes[name]
        else:
            attributes[name] = value
    with client(sim) as http:
        response = post(http, SEGMENT_SERIES_PATH, body)
    error = error_of(response)
    assert response.status_code == 400 and fragment in error["detail"] and error["source"] == {"pointer": pointer}


def test_malformed_bodies_are_refused(sim):
    with client(sim) as http:
        not_json = http.post(
            SEGMENT_SERIES_PATH, content=b"{nope", headers={"Content-Type": "application/vnd.api+json"}
        )
        wrong_type = post(http, SEGMENT_SERIES_PATH, {"data": {"type": "segment-values-report", "attributes": {}}})
        form = http.post(
            SEGMENT_SERIES_PATH, content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    assert not_json.status_code == 400 and wrong_type.status_code == 400
    assert error_of(wrong_type)["source"] == {"pointer": "/data/type"}
    assert form.status_code == 415


@pytest.mark.parametrize(
    "timezone, start, expected",
    [
        pytest.param(
            "US/Eastern",
            dt.date(2025, 3, 8),
            ["2025-03-08T00:00:00-05:00", "2025-03-09T00:00:00-05:00", "2025-03-10T00:00:00-04:00"],
            id="US spring forward",
        ),
        pytest.param(
            "Europe/Paris",
            dt.date(2024, 10, 26),
            ["2024-10-26T00:00:00+02:00", "2024-10-27T00:00:00+02:00", "2024-10-28T00:00:00+01:00"],
            id="EU fall back",
        ),
        pytest.param(
            "Asia/Kolkata",
            dt.date(2025, 1, 1),
            ["2025-01-01T00:00:00+05:30", "2025-01-02T00:00:00+05:30", "2025-01-03T00:00:00+05:30"],
            id="half-hour offset",
        ),
    ],
)
def test_date_times_are_local_midnights_with_that_days_offset(make_simulator, timezone, start, expected):
    sim = make_simulator(speed=FAST, today=TODAY, timezone=timezone)
    with client(sim) as http:
        body = post(
            http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], start, start + dt.timedelta(days=2))
        ).json()
    assert body["data"]["attributes"]["date_times"] == expected


# -- data ------------------------------------------------------------------------------------------------------


def test_every_series_obeys_the_identities(make_simulator):
    sim = make_simulator(segment_count=40, speed=FAST, today=TODAY)
    start = TODAY - dt.timedelta(days=MAX_HISTORY_DAYS)
    for segment in sim.account.segments:
        rows = sim.account.series(segment.id, start - dt.timedelta(days=1), TODAY)
        assert rows[-1]["date"] == TODAY and len(rows) == MAX_HISTORY_DAYS + 2
        for previous, row in itertools.pairwise(rows):
            assert row["net_members_changed"] == row["members_added"] - row["members_removed"]
            assert row["total_members"] == previous["total_members"] + row["net_members_changed"]
            assert row["total_members"] >= 0 and row["members_added"] >= 0
            assert 0 <= row["members_removed"] <= previous["total_members"]


def test_the_account_covers_the_awkward_shapes(make_simulator):
    sim = make_simulator(segment_count=30, speed=FAST, today=TODAY)
    account = sim.account
    year_ago = TODAY - dt.timedelta(days=MAX_HISTORY_DAYS)

    def rows(segment, start=year_ago):
        return account.series(segment.id, start, TODAY)

    recent = [s for s in account.segments if s.created.date() > TODAY - dt.timedelta(days=60)]
    assert recent
    for segment in recent:
        history = rows(segment)
        created = segment.created.date()
        assert all(r["total_members"] == 0 for r in history if r["date"] < created)
        assert any(r["total_members"] > 0 for r in history if r["date"] >= created)
    inactive = [s for s in account.segments if not s.is_active]
    assert inactive
    for segment in inactive:
        history = rows(segment)
        assert len({r["total_members"] for r in history}) == 1
        assert all(r["members_added"] == r["members_removed"] == 0 for r in history)
    totals = {s.id: [r["total_members"] for r in rows(s)] for s in account.segments}
    assert any(t[-1] < 0.8 * t[0] for t in totals.values())  # shrinking
    assert any(t[-1] > 1_000_000 for t in totals.values())  # large
    assert any(0 < t[-1] < 100 for t in totals.values())  # small
    at_floor = [
        account.series(s.id, REPORTING_DATA_FLOOR, REPORTING_DATA_FLOOR)[0]["total_members"]
        for s in account.segments
        if s.created.date() < REPORTING_DATA_FLOOR
    ]
    assert 0 in at_floor  # existed but empty when reporting data begins


def test_a_days_numbers_never_change(sim):
    segment_ids = [s.id for s in sim.account.segments[:5]]
    day = TODAY - dt.timedelta(days=30)
    with client(sim) as http:
        windows = [
            (day - dt.timedelta(days=59), day),
            (day, day + dt.timedelta(days=20)),
            (day - dt.timedelta(days=3), day + dt.timedelta(days=3)),
        ]
        answers = []
        for start, end in windows:
            body = post(http, SEGMENT_SERIES_PATH, series_body(segment_ids, start, end)).json()["data"]["attributes"]
            index = [d[:10] for d in body["date_times"]].index(day.isoformat())
            answers.append(
                {
                    r["groupings"]["segment_id"]: {k: v[index] for k, v in r["statistics"].items()}
                    for r in body["results"]
                }
            )
        sim.account.set_today(TODAY + dt.timedelta(days=45))  # "today" moves on
        body = post(http, SEGMENT_SERIES_PATH, series_body(segment_ids, day, day)).json()["data"]["attributes"]
        answers.append(
            {r["groupings"]["segment_id"]: {k: v[0] for k, v in r["statistics"].items()} for r in body["results"]}
        )
    assert all(answer == answers[0] for answer in answers)
    truth = {sid: sim.account.series(sid, day, day)[0] for sid in segment_ids}
    assert answers[0] == {sid: {k: v for k, v in row.items() if k != "date"} for sid, row in truth.items()}


def test_the_same_seed_gives_the_same_account():
    a = KlaviyoSimulator(SimulatorConfig(segment_count=15, seed=5, today=TODAY)).account
    b = KlaviyoSimulator(SimulatorConfig(segment_count=15, seed=5, today=TODAY)).account
    c = KlaviyoSimulator(SimulatorConfig(segment_count=15, seed=6, today=TODAY)).account
    start = TODAY - dt.timedelta(days=20)
    assert [(s.id, s.name, s.created) for s in a.segments] == [(s.id, s.name, s.created) for s in b.segments]
    assert [a.series(s.id, start, TODAY) for s in a.segments] == [b.series(s.id, start, TODAY) for s in b.segments]
    assert {s.id for s in a.segments} != {s.id for s in c.segments}


def test_a_year_for_a_thousand_segments_has_every_day_of_every_segment():
    # how fast it is belongs to `make benchmark`, not to a timed test
    account = KlaviyoSimulator(SimulatorConfig(segment_count=1000, seed=1, today=TODAY)).account
    for segment in account.segments:
        rows = account.series(segment.id, TODAY - dt.timedelta(days=MAX_HISTORY_DAYS), TODAY)
        assert [row["date"] for row in rows] == [
            TODAY - dt.timedelta(days=MAX_HISTORY_DAYS - n) for n in range(MAX_HISTORY_DAYS + 1)
        ]


def test_values_report_matches_the_series(sim):
    ids = [s.id for s in sim.account.segments[:4]]
    start, end = TODAY - dt.timedelta(days=MAX_HISTORY_DAYS), TODAY
    with client(sim) as http:
        response = post(http, SEGMENT_VALUES_PATH, series_body(ids, start, end, report_type="segment-values-report"))
        partial = post(
            http,
            SEGMENT_VALUES_PATH,
            series_body(ids, start, end, report_type="segment-values-report", statistics=["members_added"]),
        )
        too_old = post(
            http,
            SEGMENT_VALUES_PATH,
            series_body(ids, start - dt.timedelta(days=1), end, report_type="segment-values-report"),
        )
        with_interval = series_body(ids, start, end, report_type="segment-values-report")
        with_interval["data"]["attributes"]["interval"] = "daily"
        refused_interval = post(http, SEGMENT_VALUES_PATH, with_interval)
    assert response.status_code == 200, response.text
    for result in response.json()["data"]["attributes"]["results"]:
        rows = sim.account.series(result["groupings"]["segment_id"], start, end)
        assert result["statistics"] == {
            "total_members": rows[-1]["total_members"],
            "members_added": sum(r["members_added"] for r in rows),
            "members_removed": sum(r["members_removed"] for r in rows),
            "net_members_changed": sum(r["net_members_changed"] for r in rows),
        }
    assert all(set(r["statistics"]) == {"members_added"} for r in partial.json()["data"]["attributes"]["results"])
    assert too_old.status_code == 400 and refused_interval.status_code == 400


# -- rate limits -----------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_report_limits_are_fixed_windows_with_retry_after(make_simulator):
    sim = make_simulator(today=TODAY)  # Klaviyo's real limits: 1/s, 2/min
    clock = FakeClock()
    sim.rate_limits.clock = clock
    body = series_body([sim.account.segments[0].id], TODAY, TODAY)
    with client(sim) as http:
        first = post(http, SEGMENT_SERIES_PATH, body)
        burst = post(http, SEGMENT_SERIES_PATH, body)
        clock.advance(1.0)
        second = post(http, SEGMENT_SERIES_PATH, body)
        clock.advance(1.0)
        values_body = series_body([sim.account.segments[0].id], TODAY, TODAY, report_type="segment-values-report")
        steady = post(http, SEGMENT_VALUES_PATH, values_body)  # same bucket as the series
        clock.advance(57.5)
        still = post(http, SEGMENT_SERIES_PATH, body)
        clock.advance(0.5)
        fresh = post(http, SEGMENT_SERIES_PATH, body)
        segments = http.get(SEGMENTS_PATH)
    assert first.status_code == 200
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("2", "1")
    assert 1 <= int(first.headers["RateLimit-Reset"]) <= 60
    assert burst.status_code == 429 and burst.headers["Retry-After"] == "1"
    assert "RateLimit-Limit" not in burst.headers
    assert error_of(burst)["code"] == "throttled"
    assert second.status_code == 200 and second.headers["RateLimit-Remaining"] == "0"
    assert steady.status_code == 429 and steady.headers["Retry-After"] == "58"
    assert still.status_code == 429 and still.headers["Retry-After"] == "1"
    assert fresh.status_code == 200
    assert segments.status_code == 200  # another family, another bucket


def test_speed_shrinks_the_windows_and_retry_after_is_honest(make_simulator):
    sim = make_simulator(today=TODAY, speed=60.0)  # a minute lasts a second
    body = series_body([sim.account.segments[0].id], TODAY, TODAY)
    with client(sim) as http:
        responses = [post(http, SEGMENT_SERIES_PATH, body) for _ in range(4)]
        throttled = next(r for r in responses if r.status_code == 429)
        wait = int(throttled.headers["Retry-After"])
        assert wait == 1
        time.sleep(wait)
        after = post(http, SEGMENT_SERIES_PATH, body)
    assert after.status_code == 200


def test_an_exhausted_daily_quota_says_when_the_day_ends(make_simulator):
    sim = make_simulator(today=TODAY)
    sim.exhaust_report_quota()
    body = series_body([sim.account.segments[0].id], TODAY, TODAY)
    with client(sim) as http:
        refused = post(http, SEGMENT_SERIES_PATH, body)
        values = post(
            http,
            SEGMENT_VALUES_PATH,
            series_body([sim.account.segments[0].id], TODAY, TODAY, report_type="segment-values-report"),
        )
        segments = http.get(SEGMENTS_PATH)
    assert refused.status_code == values.status_code == 429
    assert 86_000 < int(refused.headers["Retry-After"]) <= 86_400
    assert segments.status_code == 200
    fast = make_simulator(today=TODAY, speed=3600.0)  # a day lasts 24 s
    fast.exhaust_report_quota(lasting=2.0)
    with client(fast) as http:
        assert 1 <= int(post(http, SEGMENT_SERIES_PATH, body).headers["Retry-After"]) <= 24


def test_the_daily_quota_counts_both_report_endpoints(make_simulator):
    sim = make_simulator(today=TODAY)
    clock = FakeClock()
    sim.rate_limits.clock = clock
    series = series_body([sim.account.segments[0].id], TODAY, TODAY)
    values = series_body([sim.account.segments[0].id], TODAY, TODAY, report_type="segment-values-report")
    served = 0
    with client(sim) as http:
        for i in range(240):
            response = post(http, SEGMENT_SERIES_PATH if i % 2 else SEGMENT_VALUES_PATH, series if i % 2 else values)
            served += response.status_code == 200
            clock.advance(30.0)  # two a minute: only the daily limit can refuse
    assert served == 225
    assert sim.stats()["report_requests_served"] == 225


# -- faults ----------------------------------------------------------------------------------------------------


def test_a_503_fault_is_a_json_api_error_then_service_resumes(sim):
    sim.faults.add(path=SEGMENTS_PATH, status=503, times=2)
    with client(sim) as http:
        statuses = [http.get(SEGMENTS_PATH) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert error_of(statuses[0])["code"] == "service_unavailable"
    assert sim.count(path=SEGMENTS_PATH, status=503) == 2
    assert sim.requests[0].fault == "status=503" and sim.requests[2].fault is None


def test_an_html_error_page(sim):
    sim.faults.add(path=SEGMENTS_PATH, status=500, html=True)
    with client(sim) as http:
        response = http.get(SEGMENTS_PATH)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html") and "<html>" in response.text


def test_a_throttle_fault_carries_retry_after(sim):
    sim.faults.add(path=SEGMENT_SERIES_PATH, status=429, retry_after=3)
    with client(sim) as http:
        response = post(http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], TODAY, TODAY))
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert error_of(response)["detail"] == "Request was throttled. Expected available in 3 seconds."


def test_a_throttle_fault_with_an_http_date_or_without_retry_after(sim):
    until = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after=until)
    sim.faults.add(path=SEGMENT_SERIES_PATH, status=429, omit_retry_after=True)
    body = series_body([sim.account.segments[0].id], TODAY, TODAY)
    with client(sim) as http:
        dated = post(http, SEGMENT_SERIES_PATH, body)
        bare = post(http, SEGMENT_SERIES_PATH, body)
        normal = post(http, SEGMENT_SERIES_PATH, body)
    assert dated.status_code == 429 and dated.headers["Retry-After"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert bare.status_code == 429 and "Retry-After" not in bare.headers
    assert error_of(bare)["detail"] == "Request was throttled."
    assert normal.status_code == 200
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after=dt.datetime(2030, 1, 1))


def test_faults_that_leave_out_a_day_or_a_segment(sim):
    from klaviyo_simulator.faults import drop_day, drop_segment

    ids = [s.id for s in sim.account.segments[:3]]
    body = series_body(ids, TODAY - dt.timedelta(days=2), TODAY)
    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=drop_day(1))
    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=drop_segment(0))
    with client(sim) as http:
        no_day = post(http, SEGMENT_SERIES_PATH, body).json()["data"]["attributes"]
        no_segment = post(http, SEGMENT_SERIES_PATH, body).json()["data"]["attributes"]
    assert [t[:10] for t in no_day["date_times"]] == [(TODAY - dt.timedelta(days=2)).isoformat(), TODAY.isoformat()]
    assert all(len(v) == 2 for r in no_day["results"] for v in r["statistics"].values())
    assert [r["groupings"]["segment_id"] for r in no_segment["results"]] == ids[1:]
    assert sim.account.has_segment(ids[0])  # left out, yet it exists


def test_a_segment_deleted_as_the_report_arrives_is_left_out_and_gone(sim):
    ids = [s.id for s in sim.account.segments[:3]]
    sim.faults.add(path=SEGMENT_SERIES_PATH, delete_segment_ids=(ids[1],))
    with client(sim) as http:
        listed = [s["id"] for s in http.get(SEGMENTS_PATH).json()["data"]]
        report = post(http, SEGMENT_SERIES_PATH, series_body(ids, TODAY, TODAY))
        lookup = http.get(f"{SEGMENTS_PATH}/{ids[1]}")
    assert ids[1] in listed
    assert report.status_code == 200
    assert [r["groupings"]["segment_id"] for r in report.json()["data"]["attributes"]["results"]] == [ids[0], ids[2]]
    assert lookup.status_code == 404
    assert sim.requests[1].fault == f"delete={ids[1]}"


def test_the_quota_day_can_be_shortened_apart_from_speed(make_simulator):
    sim = make_simulator(today=TODAY, speed=60.0, quota_day_seconds=3.0)
    sim.exhaust_report_quota(lasting=1.5)
    body = series_body([sim.account.segments[0].id], TODAY, TODAY)
    with client(sim) as http:
        refused = post(http, SEGMENT_SERIES_PATH, body)
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 3
        time.sleep(int(refused.headers["Retry-After"]) + 0.1)
        assert post(http, SEGMENT_SERIES_PATH, body).status_code == 200
    with pytest.raises(ValueError, match="longer than the steady window"):
        SimulatorConfig(speed=60.0, quota_day_seconds=0.5)


def test_a_slow_answer_then_a_normal_one(sim):
    sim.faults.add(path=SEGMENTS_PATH, delay_seconds=0.4)
    with client(sim) as http:
        started = time.monotonic()
        response = http.get(SEGMENTS_PATH)
    assert response.status_code == 200 and time.monotonic() - started >= 0.4
    with client(sim) as http, pytest.raises(httpx.ReadTimeout):
        sim.faults.add(path=SEGMENTS_PATH, delay_seconds=1.0)
        http.get(SEGMENTS_PATH, timeout=0.2)


def test_a_dropped_connection(sim):
    sim.faults.add(path=SEGMENTS_PATH, method="GET", drop_connection=True)
    with client(sim) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(SEGMENTS_PATH)
        assert http.get(SEGMENTS_PATH).status_code == 200
    assert sim.requests[0].status is None


def test_a_body_that_is_not_json(sim):
    sim.faults.add(path=SEGMENTS_PATH, raw_body=b"{not json", status=200)
    with client(sim) as http:
        response = http.get(SEGMENTS_PATH)
    assert response.status_code == 200 and response.content == b"{not json"


def test_a_mutated_body_keeps_the_status(sim):
    def misalign(body):
        body["data"]["attributes"]["results"][0]["statistics"]["total_members"].pop()
        return body

    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=misalign)
    with client(sim) as http:
        body = post(
            http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], TODAY - dt.timedelta(days=2), TODAY)
        ).json()
    attributes = body["data"]["attributes"]
    assert len(attributes["date_times"]) == 3
    assert len(attributes["results"][0]["statistics"]["total_members"]) == 2


def test_faults_match_method_and_path_only(sim):
    sim.faults.add(path=SEGMENTS_PATH, method="POST", status=503)
    with client(sim) as http:
        assert http.get(SEGMENTS_PATH).status_code == 200
        assert http.get(ACCOUNTS_PATH).status_code == 200
    assert len(sim.faults.pending) == 1
    with pytest.raises(ValueError):
        sim.faults.add(path=SEGMENTS_PATH)


def test_faults_that_point_elsewhere_skip_a_page_or_leave_out_tag_data(sim, foreign_host):
    from klaviyo_simulator.faults import next_link_to, tags_without_data

    sim.faults.add(path=SEGMENTS_PATH, mutate=next_link_to(foreign_host.url))
    sim.faults.add(path=SEGMENTS_PATH, location=f"{foreign_host.url}/elsewhere")
    sim.faults.add(path=SEGMENTS_PATH, mutate=tags_without_data((0,)), skip=1)
    sim.faults.add(path=SEGMENT_SERIES_PATH, retry_after="99999999999999")
    with client(sim) as http:
        linked = http.get(SEGMENTS_PATH).json()["links"]
        redirect = http.get(SEGMENTS_PATH)
        untouched, without = (http.get(SEGMENTS_PATH, params={"include": "tags"}).json() for _ in range(2))
        throttled = post(http, SEGMENT_SERIES_PATH, series_body([sim.account.segments[0].id], TODAY, TODAY))
    assert linked["next"].startswith(f"{foreign_host.url}{SEGMENTS_PATH}?") and "page%5Bcursor%5D=" in linked["next"]
    assert redirect.status_code == 307 and redirect.headers["Location"] == f"{foreign_host.url}/elsewhere"
    assert all("data" in r["relationships"]["tags"] for r in untouched["data"])
    assert "data" not in without["data"][0]["relationships"]["tags"]
    assert without["data"][0]["relationships"]["tags"]["links"]["related"].endswith("/tags")
    assert all("data" in r["relationships"]["tags"] for r in without["data"][1:])
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "99999999999999"
    assert foreign_host.requests == []  # httpx follows no redirect unless told to


# -- admin, log, contract, CLI ---------------------------------------------------------------------------------


def test_admin_endpoints(sim):
    segment = sim.account.segments[0]
    with client(sim) as http:
        http.get(SEGMENTS_PATH)
        stats = httpx.get(sim.base_url + "/__simulator/stats").json()
        truth = httpx.get(
            sim.base_url + "/__simulator/truth/series",
            params={"segment_id": segment.id, "start": "2025-06-01", "end": "2025-06-03"},
        ).json()
        edited = httpx.post(sim.base_url + f"/__simulator/segments/{segment.id}/edit").json()
        deleted = httpx.post(sim.base_url + f"/__simulator/segments/{segment.id}/delete")
        deleted_again = httpx.post(sim.base_url + f"/__simulator/segments/{segment.id}/delete")
    assert stats["requests_by_path"][SEGMENTS_PATH] == {"200": 1}
    assert stats["report_requests_served"] == 0
    expected = sim.account.series(segment.id, dt.date(2025, 6, 1), dt.date(2025, 6, 3))
    assert truth["series"] == [{**row, "date": row["date"].isoformat()} for row in expected]
    assert edited["definition"] == segment.definition
    assert deleted.status_code == 200 and deleted_again.status_code == 404
    assert not sim.account.has_segment(segment.id)
    assert sim.count() == 1  # admin calls are not part of the log


def test_count_and_reset_log(sim):
    with client(sim) as http:
        http.get(SEGMENTS_PATH)
        http.get(SEGMENTS_PATH + "/")
    assert sim.count() == 2 and sim.count(method="get", path=SEGMENTS_PATH) == 1 and sim.count(status=404) == 1
    sim.reset_log()
    assert sim.requests == [] and sim.stats()["requests_by_path"][SEGMENTS_PATH] == {"200": 1}


def test_every_response_matches_klaviyos_openapi_document(make_simulator, openapi_contract):
    sim = make_simulator(segment_count=25, speed=FAST, today=TODAY)
    with client(sim) as http:
        http.get(ACCOUNTS_PATH)
        collect_pages(http, SEGMENTS_PATH)
        http.get(
            f"{SEGMENTS_PATH}/{sim.account.segments[0].id}",
            params={"include": "tags", "additional-fields[segment]": "profile_count"},
        )
        http.get(SEGMENTS_PATH, params={"page[size]": "11"})
        http.get(SEGMENTS_PATH, headers={"Authorization": "Klaviyo-API-Key nope"})
        ids = [s.id for s in sim.account.segments]
        post(http, SEGMENT_SERIES_PATH, series_body(ids, TODAY - dt.timedelta(days=59), TODAY))
        post(
            http,
            SEGMENT_VALUES_PATH,
            series_body(ids, TODAY - dt.timedelta(days=365), TODAY, report_type="segment-values-report"),
        )
        post(http, SEGMENT_SERIES_PATH, series_body(ids, TODAY - dt.timedelta(days=60), TODAY))
    sim.exhaust_report_quota()
    with client(sim) as http:
        post(http, SEGMENT_SERIES_PATH, series_body(ids, TODAY, TODAY))
    assert sim.count() == 11
    assert contract_problems(sim, openapi_contract) == []
    with pytest.raises(ContractError, match="is_active"):
        validate_response(
            "GET",
            SEGMENTS_PATH,
            200,
            {"data": [{"type": "segment", "id": "x", "attributes": {}, "links": {"self": "http://x"}}]},
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_cli_serves_until_sigterm_and_never_prints_the_key():
    port = _free_port()
    env = {**os.environ, "KLAVIYO_API_KEY": "cli-secret-key"}
    repo = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_simulator", "serve", "--port", str(port), "--segments", "4", "--seed", "2"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        response = httpx.get(
            f"http://127.0.0.1:{port}{SEGMENTS_PATH}",
            headers={"Authorization": "Klaviyo-API-Key cli-secret-key", "revision": API_REVISION},
        )
        assert response.status_code == 200 and len(response.json()["data"]) == 4
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "cli-secret-key" not in line + out + err


def test_the_cli_refuses_to_start_without_a_key(monkeypatch, capsys):
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)
    assert command.main(["serve", "--port", "0"]) == 2
    assert "KLAVIYO_API_KEY" in capsys.readouterr().err


def test_a_quota_spent_to_last_stays_spent_past_the_end_of_its_daily_window():
    from klaviyo_simulator.api import FAMILY_LIMITS, REPORTS_FAMILY
    from klaviyo_simulator.fixed_windows import FixedWindowLimiter

    # daily windows of 1.5 real seconds from now: the first ends at 1.5 s
    limiter = FixedWindowLimiter(FAMILY_LIMITS, speed=60.0, day_seconds=1.5)
    started = time.monotonic()
    time.sleep(max(0.0, started + 1.3 - time.monotonic()))
    # 0.2 s left in this window: spent "for 1 s" must be the next window's quota
    limiter.exhaust_daily(REPORTS_FAMILY, lasting=1.0)
    time.sleep(max(0.0, started + 1.8 - time.monotonic()))
    assert not limiter.acquire(REPORTS_FAMILY).allowed
    time.sleep(max(0.0, started + 3.1 - time.monotonic()))
    assert limiter.acquire(REPORTS_FAMILY).allowed  # the window after it is a fresh day
