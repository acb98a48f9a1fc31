"""A run skips the dbt build when the marts are already built from every load (accounts finishing together),
and builds whenever anything changed: a new load, a full refresh, a new manifest, or only some models."""

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


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {event.asset_key for event in result.get_asset_materialization_events()}


def test_the_models_build_only_when_something_changed(make_simulator, tmp_path, monkeypatch):
    monkeypatch.setenv("KLAVIYO_API_KEY", API_KEY)
    sim = make_simulator(api_key=API_KEY, speed=60.0, segment_count=4)
    res = resources(sim, tmp_path, dbt=DbtCliResource(project_dir=dbt_project))
    last = sim.account.today() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=9)
    assert dg.materialize([segments], resources=res).success
    built = dg.materialize(
        [segment_series_daily, segment_growth_models, analytics_copy, growth_chart],
        resources=res,
        tags=range_tags(first, last),
    )
    assert {DAILY, ANALYTICS_COPY_KEY, GROWTH_CHART_KEY} <= materialized(built)
    for step in built_from.STEPS:
        record = json.loads((tmp_path / "state" / "built_from" / f"{step}.json").read_text())
        assert record["run_id"] == built.run_id, step

    # nothing loaded since: the build and the publishing after it are skipped, the run still succeeds
    again = dg.materialize([segment_growth_models, analytics_copy, growth_chart], resources=res)
    assert again.success and materialized(again) == set()

    # a run killed after the build, before the chart was drawn: the next run builds and publishes again
    (tmp_path / "state" / "built_from" / "growth_chart.json").unlink()
    after_crash = dg.materialize([segment_growth_models, analytics_copy, growth_chart], resources=res)
    assert {DAILY, ANALYTICS_COPY_KEY, GROWTH_CHART_KEY} <= materialized(after_crash)

    # a full refresh always builds
    refresh = dg.materialize(
        [segment_growth_models],
        resources=res,
        run_config={"ops": {segment_growth_models.op.name: {"config": {"full_refresh": True}}}},
    )
    assert DAILY in materialized(refresh)

    # some models only: built, and not counted as a complete build
    subset = dg.materialize([segment_growth_models], resources=res, selection=[DAILY])
    assert materialized(subset) == {DAILY}

    # a new load (the segments refresh of an account's run): the next run builds
    assert dg.materialize([segments], resources=res).success
    after_load = dg.materialize([segment_growth_models, analytics_copy, growth_chart], resources=res)
    assert {DAILY, ANALYTICS_COPY_KEY} <= materialized(after_load)

    # another manifest (a new version of the models) builds even without a new load
    record = built_from.last_built_from(tmp_path / "state")
    built_from.record_built_from(tmp_path / "state", {**record, "manifest_sha256": "an older manifest"}, "x")
    upgraded = dg.materialize([segment_growth_models, analytics_copy, growth_chart], resources=res)
    assert DAILY in materialized(upgraded)
