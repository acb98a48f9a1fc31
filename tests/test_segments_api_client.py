"""The Segments API client against the simulator over real HTTP: pages to the last at the page-size edges,
retries after Retry-After, and clear failures (a bad key naming its variable, never the key; a malformed or
inconsistent page) that return nothing."""

from __future__ import annotations

import datetime as dt
import logging

import httpx
import pytest

from klaviyo_simulator.foreign_host import ForeignHost
from segment_pipeline.klaviyo.settings import ApiKey
from segment_pipeline.segments_api import (
    SegmentsApiAuthError,
    SegmentsApiConfigError,
    SegmentsApiOptions,
    SegmentsApiResponseError,
    SegmentsApiUnavailableError,
)
from segment_pipeline.segments_api.client import SegmentsApiClient
from segment_pipeline.settings import load_settings
from segments_api_simulator import SegmentsApiSimulator, World

KEY = "sak_live_client_test_7f3a9c2e1b"
VARIABLE = "SEGMENTS_API_KEY_SHOP"
START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
SIZES = {"empty": 0, "one": 1, "full": 100, "one_more": 101, "big": 250}


@pytest.fixture(scope="module")
def simulator():
    world = World(seed=5, start=START)
    for name, count in SIZES.items():
        world.add_workspace(name, f"{KEY}-{name}", count)
    with SegmentsApiSimulator(world) as running:
        yield running


def client_for(simulator, workspace: str, waits: list[float] | None = None, **options) -> SegmentsApiClient:
    settings = SegmentsApiOptions.checked(base_url=simulator.base_url, **options)
    sleep = waits.append if waits is not None else (lambda seconds: None)
    return SegmentsApiClient(settings, ApiKey(f"{KEY}-{workspace}"), VARIABLE, sleep=sleep)


def admin(simulator, path: str, body: dict | None = None) -> dict:
    response = httpx.post(f"{simulator.base_url}/_admin/{path}", json=body or {})
    response.raise_for_status()
    return response.json()


def truth_ids(simulator, workspace: str) -> set[str]:
    truth = httpx.get(f"{simulator.base_url}/_admin/truth", params={"workspace": workspace}).json()
    return set(truth["segments"])


@pytest.mark.parametrize(("workspace", "pages"), [("empty", 1), ("one", 1), ("full", 1), ("one_more", 2)])
def test_pagination_is_exact_at_the_page_size_edges(simulator, workspace, pages):
    with client_for(simulator, workspace) as client:
        listing = client.list_segments()
    ids = [segment.id for segment in listing.segments]
    assert len(ids) == SIZES[workspace] == len(set(ids))
    assert set(ids) == truth_ids(simulator, workspace)
    assert listing.pages == pages and listing.requests == pages


def test_every_value_is_read_as_the_simulator_shows_it(simulator):
    truth = httpx.get(f"{simulator.base_url}/_admin/truth", params={"workspace": "one"}).json()["segments"]
    with client_for(simulator, "one") as client:
        (segment,) = client.list_segments().segments
    recounted_at, count = truth[segment.id]["recounts"][-1]
    assert segment.cached_count == count
    assert segment.last_counted_at == dt.datetime.fromisoformat(recounted_at.replace("Z", "+00:00"))
    assert segment.match_type == truth[segment.id]["matchType"] and len(segment.definition_hash) == 64


def test_429_and_5xx_are_retried_after_retry_after(simulator):
    admin(simulator, "faults", {"kind": "429", "times": 2, "page": 2, "workspace": "big", "retry_after": "3"})
    admin(simulator, "faults", {"kind": "500", "times": 1, "page": 3, "workspace": "big", "retry_after": None})
    waits: list[float] = []
    with client_for(simulator, "big", waits) as client:
        listing = client.list_segments()
    assert len(listing.segments) == 250 and listing.pages == 3
    # two waits of the 429's Retry-After, then the backoff's first step for the 500 without one
    assert waits == [3.0, 3.0, 1.0] and listing.requests == 6


def test_a_retry_after_beyond_the_bound_fails_at_once(simulator):
    admin(simulator, "faults", {"kind": "429", "times": 1, "workspace": "one", "retry_after": "86400"})
    waits: list[float] = []
    with client_for(simulator, "one", waits, max_retry_after_seconds=60) as client:
        with pytest.raises(SegmentsApiUnavailableError, match="SEGMENTS_API_MAX_RETRY_AFTER=60"):
            client.list_segments()
    assert waits == []


def test_retries_are_bounded(simulator):
    admin(simulator, "faults", {"kind": "500", "times": 3, "workspace": "one", "retry_after": "1"})
    waits: list[float] = []
    with client_for(simulator, "one", waits, max_attempts=3) as client:
        with pytest.raises(SegmentsApiUnavailableError, match="failed 3 times"):
            client.list_segments()
    assert waits == [1.0, 1.0]


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("truncated_json", "page 2 of the segments listing is not JSON"),
        ("no_pagination", "page 2 of the segments listing has no `pagination` object"),
        ("no_data", "page 2 of the segments listing has no `data` list"),
        ("bad_segment", "cachedCount='many' is not a whole number"),
    ],
)
def test_a_malformed_page_fails_clearly_and_returns_nothing(simulator, variant, message):
    admin(simulator, "faults", {"kind": "malformed", "variant": variant, "page": 2, "workspace": "big"})
    with client_for(simulator, "big") as client, pytest.raises(SegmentsApiResponseError, match=message):
        client.list_segments()


def test_a_listing_that_changes_while_read_is_read_again(simulator):
    admin(simulator, "faults", {"kind": "malformed", "variant": "shifting_total", "page": 2, "workspace": "big"})
    with client_for(simulator, "big") as client:
        listing = client.list_segments()
    assert len(listing.segments) == 250 and listing.requests == 2 + 3


def test_a_listing_that_never_adds_up_fails(simulator):
    admin(
        simulator,
        "faults",
        {"kind": "malformed", "variant": "shifting_total", "page": 3, "workspace": "big", "times": 3},
    )
    with client_for(simulator, "big") as client, pytest.raises(SegmentsApiResponseError, match="did not add up"):
        client.list_segments()


def test_a_bad_key_names_its_variable_and_never_the_key(simulator, caplog):
    caplog.set_level(logging.DEBUG)
    settings = SegmentsApiOptions.checked(base_url=simulator.base_url)
    with SegmentsApiClient(settings, ApiKey("sak_wrong_key_0000"), VARIABLE) as client:
        with pytest.raises(SegmentsApiAuthError) as failure:
            client.list_segments()
    assert VARIABLE in str(failure.value) and "HTTP 401" in str(failure.value)
    assert "sak_wrong_key_0000" not in str(failure.value) + repr(failure.value) + caplog.text
    assert "sak_wrong_key_0000" not in repr(client.__dict__)


def test_the_base_url_is_checked_before_a_key_is_sent():
    with pytest.raises(SegmentsApiConfigError, match="unencrypted"):
        SegmentsApiOptions.checked(base_url="http://api.example.com")
    with pytest.raises(SegmentsApiConfigError, match="user name or password"):
        SegmentsApiOptions.checked(base_url="https://user:secret@api.example.com")
    with pytest.raises(Exception, match="SEGMENTS_API_BASE_URL is not set"):
        load_settings({"SEGMENTS_API_KEY": KEY})
    with pytest.raises(Exception, match="SEGMENTS_API_SCHEDULE_HOUR=24"):
        load_settings(
            {"SEGMENTS_API_KEY": KEY, "SEGMENTS_API_BASE_URL": "https://x.test", "SEGMENTS_API_SCHEDULE_HOUR": "24"}
        )


def test_a_redirect_is_never_followed_so_the_key_reaches_no_other_host(simulator):
    with ForeignHost() as elsewhere:
        admin(
            simulator,
            "faults",
            {"kind": "redirect", "workspace": "one", "location": elsewhere.url + "/api/v1/segments"},
        )
        with client_for(simulator, "one") as client, pytest.raises(SegmentsApiResponseError, match="never followed"):
            client.list_segments()
        assert elsewhere.requests == []
