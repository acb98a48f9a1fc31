"""The reconciliation check's rotation: one values-report request a check, 100 segments in turn, every segment
compared within ceil(segments / 100) checks; `KLAVIYO_RECONCILE_SEGMENTS=all` compares every segment at once.

The real series asset and check, run by Dagster in process against the simulator over HTTP; what each check
compared is read from the requests the simulator received, and its metadata is held to it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from segment_pipeline import reconciliation as rc
from segment_pipeline.defs.account_names import asset_key
from segment_pipeline.klaviyo.limits import MAX_SEGMENT_IDS_PER_REPORT, SEGMENT_VALUES_PATH
from segment_pipeline.tables import SEGMENT_SERIES_TABLE

from . import pipeline_helpers as pipeline
from .pipeline_helpers import API_KEY, FAST, definitions, materialize, range_tags

pytestmark = pytest.mark.timeout(600)

SEGMENTS = 250
SERIES_NODE = "klaviyo__default__segment_series_daily"
CHECK = dg.AssetCheckKey(asset_key("default", SEGMENT_SERIES_TABLE), rc.CHECK_NAME)


@dataclass
class Loaded:
    sim: KlaviyoSimulator
    work: Path
    first_check: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    work = tmp_path_factory.mktemp("rotation")
    with KlaviyoSimulator(SimulatorConfig(api_key=API_KEY, segment_count=SEGMENTS, speed=FAST, seed=11)) as sim:
        last = sim.account.today() - dt.timedelta(days=1)
        materialize([pipeline.SEGMENTS], sim, work)
        # the series and its check in one run, as a scheduled run does
        first = materialize([pipeline.SERIES], sim, work, checks=True, tags=range_tags(last, last))
        yield Loaded(sim, work, first)


def values_requests(sim: KlaviyoSimulator) -> list:
    return [r for r in sim.requests if r.method == "POST" and r.path == SEGMENT_VALUES_PATH]


def compared_ids(request) -> set[str]:
    """The segment ids a values-report request asked about, from its `any(segment_id,[...])` filter."""
    text = request.json["data"]["attributes"]["filter"]
    return set(json.loads(text[text.index("[") : text.rindex("]") + 1]))


def run_check(loaded: Loaded, **env: str) -> tuple[dg.AssetCheckEvaluation, list]:
    """The check alone, executed by Dagster; its evaluation and the values-report requests it sent."""
    before = len(values_requests(loaded.sim))
    defs = definitions(loaded.sim, loaded.work, **env)
    result = dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=dg.AssetSelection.checks(CHECK),
        resources=defs.resources,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation, values_requests(loaded.sim)[before:]


def numbers(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {name: value.value for name, value in evaluation.metadata.items()}


def test_three_checks_of_one_request_each_compare_all_250_segments(loaded: Loaded) -> None:
    (first,) = [e for e in loaded.first_check.get_asset_check_evaluations() if e.check_name == rc.CHECK_NAME]
    series = loaded.first_check.asset_materializations_for_node(SERIES_NODE)[0].metadata
    assert series["run_reconciliation_requests_reserved"].value == 1
    evaluations, seen = [first], [values_requests(loaded.sim)]
    for _ in range(2):
        evaluation, sent = run_check(loaded)
        evaluations.append(evaluation)
        seen.append(sent)
    assert [len(sent) for sent in seen] == [1, 1, 1]
    batches = [compared_ids(sent[0]) for sent in seen]
    assert [len(batch) for batch in batches] == [MAX_SEGMENT_IDS_PER_REPORT] * 3
    assert set().union(*batches) == {s.id for s in loaded.sim.account.segments}
    for evaluation, batch in zip(evaluations, batches, strict=True):
        assert evaluation.passed, evaluation.description
        found = numbers(evaluation)
        assert found["segments_compared"] == len(batch)
        assert found["segments_tracked"] == SEGMENTS and found["checks_to_compare_all"] == math.ceil(SEGMENTS / 100)
        assert found["report_requests_planned"] == found["report_requests_sent"] == 1
        assert found["segments_mode"] == "rotate"
        assert f"{len(batch)} of {SEGMENTS} tracked" in evaluation.description
    # the fourth goes on where the third stopped (it wrapped around to the start)
    evaluation, (sent,) = run_check(loaded)
    ordered = sorted(s.id for s in loaded.sim.account.segments)
    assert compared_ids(sent) == set(ordered[50:150])


def test_all_compares_every_segment_at_one_request_per_hundred(loaded: Loaded) -> None:
    evaluation, sent = run_check(loaded, KLAVIYO_RECONCILE_SEGMENTS="all")
    assert len(sent) == math.ceil(SEGMENTS / MAX_SEGMENT_IDS_PER_REPORT)
    assert set().union(*(compared_ids(request) for request in sent)) == {s.id for s in loaded.sim.account.segments}
    found = numbers(evaluation)
    assert evaluation.passed, evaluation.description
    assert found["segments_compared"] == SEGMENTS and found["segments_mode"] == "all"
    assert found["report_requests_planned"] == found["report_requests_sent"] == len(sent)
    assert found["checks_to_compare_all"] == 1


def test_a_damaged_rotation_file_starts_again_from_the_first_segment(loaded: Loaded) -> None:
    (path,) = (loaded.work / "state" / "reconciliation").glob("*.json")
    path.write_text("{not json")
    evaluation, (sent,) = run_check(loaded)
    ordered = sorted(s.id for s in loaded.sim.account.segments)
    assert evaluation.passed and compared_ids(sent) == set(ordered[:100])
    assert json.loads(path.read_text()) == {"after": ordered[99]}


@pytest.mark.parametrize(
    "after, expected",
    [
        (None, list(range(100))),
        ("id199", list(range(200, 250)) + list(range(50))),
        ("id049", list(range(50, 150))),
        ("id0495", list(range(50, 150))),  # a deleted segment's id still marks the place
        ("zzz", list(range(100))),
    ],
)
def test_the_batch_is_the_next_hundred_ids_around_the_circle(after, expected) -> None:
    ids = [f"id{i:03d}" for i in range(250)]
    assert rc.rotation_batch(reversed(ids), after) == [ids[i] for i in expected]
    assert rc.rotation_batch(ids[:30], "id010") == ids[:30]


def test_the_series_reserves_one_request_when_rotating() -> None:
    assert rc.request_count(250, 7) == 1 and rc.request_count(250, 7, "all") == 3
    assert rc.request_count(0, 7) == 0 and rc.request_count(250, 0) == 0
