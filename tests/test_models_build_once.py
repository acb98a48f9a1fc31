"""A run skips the dbt build when the marts, the copy and the chart are already made from every load (accounts
finishing together), and builds whenever anything changed: a new load, a full refresh, a new manifest, only
some models, or a run that died before publishing. (A run killed during the publish, then run again, is in
test_crash_and_resume.py.)"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
from dagster_dbt import DbtCliResource

from segment_pipeline.defs.ingest.assets import segment_series_daily, segments
from segment_pipeline.defs.publish.assets import ANALYTICS_COPY_KEY, GROWTH_CHART_KEY, analytics_copy, growth_chart
from segment_pipeline.defs.transform import built_from
from segment_pipeline.defs.transform.assets import segment_growth_models
from segment_pipeline.defs.transform.project import dbt_project

from .pipeline_helpers import API_KEY, range_tags, resources

DAILY = dg.AssetKey(["marts", "segment_growth_daily"])
PUBLISHED = {DAILY, ANALYTICS_COPY_KEY, GROWTH_CHART_KEY}


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {event.asset_key for event in result.get_asset_materialization_events()}


def test_the_models_build_once_for_the_same_loads_and_again_after_a_load(make_simulator, tmp_path, monkeypatch):
    monkeypatch.setenv("KLAVIYO_API_KEY", API_KEY)
    sim = make_simulator(api_key=API_KEY, speed=60.0, segment_count=4)
    res = resources(sim, tmp_path, dbt=DbtCliResource(project_dir=dbt_project))
    last = sim.account.today() - dt.timedelta(days=1)
    models_and_publishing = [segment_growth_models, analytics_copy, growth_chart]
    assert dg.materialize([segments], resources=res).success
    built = dg.materialize(
        [segment_series_daily, *models_and_publishing],
        resources=res,
        tags=range_tags(last - dt.timedelta(days=9), last),
    )
    assert PUBLISHED <= materialized(built)
    for step in built_from.STEPS:
        record = json.loads((tmp_path / "state" / "built_from" / f"{step}.json").read_text())
        assert record["run_id"] == built.run_id, step

    # nothing loaded since: the build and the publishing after it are skipped, and the run still succeeds
    again = dg.materialize(models_and_publishing, resources=res)
    assert again.success and materialized(again) == set()
    # but a run of some models only builds them (it does not know the rest is current, and need not)
    assert materialized(dg.materialize([segment_growth_models], resources=res, selection=[DAILY])) == {DAILY}

    # a new load (the segments refresh every account's run makes): the next run builds and publishes
    assert dg.materialize([segments], resources=res).success
    assert PUBLISHED <= materialized(dg.materialize(models_and_publishing, resources=res))


def test_only_a_complete_current_build_and_publish_is_skipped(tmp_path):
    state = tmp_path / "state"
    inputs = {"loads": 7, "newest_load_id": "1764590000.1", "manifest_sha256": "abc"}
    may_skip = built_from.may_skip
    assert not may_skip(state, inputs, every_model=True, full_refresh=False)  # never built
    for step in built_from.STEPS:
        built_from.record_built_from(state, inputs, "run-1", step=step)
    assert may_skip(state, inputs, every_model=True, full_refresh=False)
    assert not may_skip(state, inputs, every_model=True, full_refresh=True)  # a full refresh always builds
    assert not may_skip(state, inputs, every_model=False, full_refresh=False)  # only some models selected
    assert not may_skip(state, None, every_model=True, full_refresh=False)  # no loads table yet
    assert not may_skip(state, {**inputs, "loads": 8}, every_model=True, full_refresh=False)  # a load since
    assert not may_skip(state, {**inputs, "manifest_sha256": "new"}, every_model=True, full_refresh=False)
    # a run that built and copied but died before the chart: the next run builds and publishes again
    (state / "built_from" / "growth_chart.json").unlink()
    assert not may_skip(state, inputs, every_model=True, full_refresh=False)
    # a damaged record is not trusted
    built_from.record_built_from(state, inputs, "run-2", step="growth_chart")
    (state / "built_from" / "models.json").write_text("{not json", encoding="utf-8")
    assert not may_skip(state, inputs, every_model=True, full_refresh=False)
