"""The simulator's segment tags: `include=tags` on the segments endpoints, its scope and its stricter limit."""

from __future__ import annotations

import pytest

from klaviyo_simulator.tags import account_tags
from segment_pipeline.klaviyo.limits import SEGMENTS_INCLUDE_RATE_LIMIT, SEGMENTS_PATH

from .test_simulator import client

pytestmark = pytest.mark.timeout(120)


def all_pages(http, params):
    documents, url = [], SEGMENTS_PATH
    while url:
        response = http.get(url, params=params)
        assert response.status_code == 200, response.text
        documents.append(response.json())
        url, params = documents[-1]["links"].get("next"), None
    return documents


def test_include_tags_lists_each_segments_tags_and_includes_each_tag_once_a_page(make_simulator):
    sim = make_simulator(segment_count=25, speed=1000.0)
    with client(sim) as http:
        documents = all_pages(http, {"include": "tags"})
    seen = {}
    for document in documents:
        included = [(t["type"], t["id"]) for t in document["included"]]
        assert len(included) == len(set(included))
        names = {t["id"]: t["attributes"]["name"] for t in document["included"]}
        for resource in document["data"]:
            ids = [entry["id"] for entry in resource["relationships"]["tags"]["data"]]
            assert set(ids) <= set(names)
            seen[resource["id"]] = sorted(names[i] for i in ids)
    assert seen == {s.id: sorted(t.name for t in s.tags) for s in sim.account.segments}
    assert any(seen.values()) and not all(seen.values())
    assert {t.name for s in sim.account.segments for t in s.tags} <= {t.name for t in account_tags(7)}


def test_without_include_no_tag_data_is_listed(make_simulator):
    sim = make_simulator(segment_count=3)
    with client(sim) as http:
        document = http.get(SEGMENTS_PATH).json()
    assert "included" not in document
    assert all("data" not in r["relationships"]["tags"] for r in document["data"])


def test_include_tags_needs_the_tags_read_scope(make_simulator):
    sim = make_simulator(segment_count=3, missing_scopes=("tags:read",))
    with client(sim) as http:
        refused = http.get(SEGMENTS_PATH, params={"include": "tags"})
        plain = http.get(SEGMENTS_PATH)
        single = http.get(f"{SEGMENTS_PATH}/{sim.account.segments[0].id}", params={"include": "tags"})
    assert refused.status_code == 403 and "tags:read" in refused.json()["errors"][0]["detail"]
    assert single.status_code == 403
    assert plain.status_code == 200


def test_requests_with_include_count_against_a_stricter_limit(make_simulator):
    sim = make_simulator(segment_count=3)  # real-time windows
    burst = SEGMENTS_INCLUDE_RATE_LIMIT.per_second
    with client(sim) as http:
        # 2 * burst + 1 quick requests span at most two 1-second windows, so one window gets burst + 1
        statuses = [http.get(SEGMENTS_PATH, params={"include": "tags"}).status_code for _ in range(2 * burst + 1)]
        plain = http.get(SEGMENTS_PATH)
    assert statuses[:burst] == [200] * burst and 429 in statuses
    assert plain.status_code == 200  # the segments limit itself (75 a second) is far from spent
