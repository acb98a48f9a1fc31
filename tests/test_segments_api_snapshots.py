"""Segments API workspaces snapshotted through their Dagster assets, against the simulator over real HTTP, into a
real DuckDB file: a week of simulated days keeps exactly the recounts each snapshot saw, on their local days; a
filter change is a new definition version; a re-run changes nothing; a bad key and a malformed page fail clearly
and lose nothing; the key shows nowhere. At the end `dbt build` runs once over the same file: the daily mart's net
changes for the week are those of the simulator's truth, on the right local days, and a second build changes
nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import httpx
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from segment_pipeline.defs.deployment import build_definitions
from segment_pipeline.defs.segments_api import snapshot_key
from segment_pipeline.settings import load_settings
from segments_api_simulator import SegmentsApiSimulator, World

from .test_dbt_models import query, run_dbt

TIMEZONES = {"week": "America/Los_Angeles", "edits": "Asia/Tokyo", "faults": "UTC"}
SEGMENT_COUNTS = {"week": 6, "edits": 3, "faults": 150}
KEYS = {name: f"sak_live_{name}_5d1c0e9b7a3f" for name in TIMEZONES}
VARIABLES = {name: f"SEGMENTS_API_KEY_{name.upper()}" for name in TIMEZONES}
START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=12)
# when the week's snapshots are taken, in hours after the start: some days twice, one day skipped
SNAPSHOT_HOURS = (2, 9.5, 26, 50, 50.25, 75, 98, 99.5, 146, 170)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments_api")
    world = World(seed=11, start=START)
    for name, count in SEGMENT_COUNTS.items():
        world.add_workspace(name, KEYS[name], count)
    accounts = [
        {"name": "brand", "api_key_env": "KLAVIYO_KEY_BRAND", "timezone": "US/Eastern"},
        *(
            {"name": name, "platform": "segments_api", "api_key_env": VARIABLES[name], "timezone": zone}
            for name, zone in TIMEZONES.items()
        ),
    ]
    (tmp / "accounts.yaml").write_text(yaml.safe_dump({"accounts": accounts}), encoding="utf-8")
    with SegmentsApiSimulator(world) as simulator:
        env = {
            "KLAVIYO_ACCOUNTS_FILE": str(tmp / "accounts.yaml"),
            "KLAVIYO_KEY_BRAND": "pk_not_used_in_this_test",
            "SEGMENTS_API_BASE_URL": simulator.base_url,
            "WAREHOUSE_PATH": str(tmp / "warehouse.duckdb"),
            "PIPELINE_STATE_DIR": str(tmp / "state"),
            **{VARIABLES[name]: key for name, key in KEYS.items()},
        }
        defs = build_definitions(load_settings(env))
        yield simulator, defs, tmp / "warehouse.duckdb"


def snapshot(deployment, workspace: str, **kwargs) -> dg.ExecuteInProcessResult:
    _, defs, _ = deployment
    selection = dg.AssetSelection.assets(snapshot_key(workspace))
    return dg.materialize([*defs.assets, *defs.asset_checks], selection=selection, resources=defs.resources, **kwargs)


def rows(deployment, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(deployment[2]), read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


def tables(deployment, workspace: str) -> dict[str, list[tuple]]:
    names = ("workspaces", "segments", "segment_definitions", "segment_count_snapshots")
    return {
        name: sorted(rows(deployment, f"select * from segments_api.{name} where workspace_name = ?", [workspace]))
        for name in names
    }


def admin(deployment, path: str, body: dict | None = None) -> dict:
    response = httpx.post(f"{deployment[0].base_url}/_admin/{path}", json=body or {})
    response.raise_for_status()
    return response.json()


def truth(deployment, workspace: str) -> dict:
    return httpx.get(f"{deployment[0].base_url}/_admin/truth", params={"workspace": workspace}).json()


def moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def metadata(result: dg.ExecuteInProcessResult, workspace: str) -> dict:
    (event,) = result.asset_materializations_for_node(snapshot_key(workspace).to_python_identifier())
    return {name: value.value for name, value in event.metadata.items()}


def test_a_week_of_snapshots_keeps_exactly_the_recounts_seen_on_their_local_days(deployment):
    zone = ZoneInfo(TIMEZONES["week"])
    seen: dict[str, set[tuple[dt.datetime, int]]] = {}
    new_counts = 0
    hours = 0.0
    for at in SNAPSHOT_HOURS:
        admin(deployment, "clock", {"advance_hours": at - hours})
        hours = at
        result = snapshot(deployment, "week")
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        assert check.passed, check.metadata
        shown = metadata(result, "week")
        new_counts += shown["new_counts"]
        assert (shown["segments"], shown["pages"], shown["requests_sent"]) == (SEGMENT_COUNTS["week"], 1, 1)
        assert shown["new_segments"] == (SEGMENT_COUNTS["week"] if at == SNAPSHOT_HOURS[0] else 0)
        ((first_seen,),) = rows(
            deployment, "select min(first_seen_at) from segments_api.segments where workspace_name = 'week'"
        )
        assert shown["history_starts_at"] == first_seen.timestamp()
        # what this snapshot could see: each segment's latest recount up to the simulator's clock
        for segment_id, facts in truth(deployment, "week")["segments"].items():
            counted_at, count = facts["recounts"][-1]
            seen.setdefault(segment_id, set()).add((moment(counted_at), count))
    expected: dict[tuple[str, dt.date], tuple[dt.datetime, int]] = {}
    for segment_id, counts in seen.items():
        for counted_at, count in sorted(counts):  # oldest first: the latest of each local day wins
            expected[(segment_id, counted_at.astimezone(zone).date())] = (counted_at, count)
    stored = {
        (segment_id, day): (counted_at, count)
        for segment_id, day, counted_at, count in rows(
            deployment,
            "select segment_id, counted_date, last_counted_at, cached_count from segments_api.segment_count_snapshots "
            "where workspace_name = 'week'",
        )
    }
    assert stored == expected
    # the simulator recounts at irregular times: some local days had two recounts seen, some none
    assert sum(len(counts) for counts in seen.values()) > len(expected) > len(seen)
    # the metadata's count of new data points is every distinct recount seen
    assert new_counts == sum(len(counts) for counts in seen.values())


def test_a_rerun_of_the_same_day_changes_nothing(deployment):
    before = tables(deployment, "week")
    result = snapshot(deployment, "week")
    after = tables(deployment, "week")
    assert after["segment_count_snapshots"] == before["segment_count_snapshots"]
    assert after["segment_definitions"] == before["segment_definitions"]
    # a segment seen again moves only its last_seen_at and _loaded_at (columns 6 and 8)
    assert [row[:6] + row[7:8] for row in after["segments"]] == [row[:6] + row[7:8] for row in before["segments"]]
    found = metadata(result, "week")
    assert found["new_counts"] == 0 and found["counts_not_recalculated"] == SEGMENT_COUNTS["week"]


def expected_hash(match_type: str, filters: list) -> str:
    canonical = json.dumps({"filters": filters, "matchType": match_type}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def versions(deployment, segment_id: str) -> list[tuple]:
    return rows(
        deployment,
        "select definition_hash, match_type, filters from segments_api.segment_definitions "
        "where workspace_name = 'edits' and segment_id = ? order by first_seen_at",
        [segment_id],
    )


def test_a_filter_change_is_a_new_definition_version_and_a_rename_is_not(deployment):
    assert snapshot(deployment, "edits").success
    segments = truth(deployment, "edits")["segments"]
    edited, renamed, _ = sorted(segments)
    original = segments[edited]
    new_filters = [{"field": "plan", "operator": "eq", "value": "enterprise"}]
    admin(deployment, f"workspaces/edits/segments/{edited}", {"filters": new_filters, "matchType": "any"})
    admin(deployment, f"workspaces/edits/segments/{renamed}", {"name": "A new name"})
    result = snapshot(deployment, "edits")
    assert metadata(result, "edits")["new_definition_versions"] == 1
    assert versions(deployment, edited) == [
        (expected_hash(original["matchType"], original["filters"]), original["matchType"], _json(original["filters"])),
        (expected_hash("any", new_filters), "any", _json(new_filters)),
    ]
    assert len(versions(deployment, renamed)) == 1
    assert rows(deployment, "select name from segments_api.segments where segment_id = ?", [renamed]) == [
        ("A new name",)
    ]


def test_a_return_to_an_earlier_definition_is_a_version_of_its_own(deployment):
    # after the test above: the first segment went from its original definition to plan = enterprise
    edited = sorted(truth(deployment, "edits")["segments"])[0]
    before = versions(deployment, edited)
    assert len(before) == 2
    original_hash, original_match, original_filters = before[0]
    admin(
        deployment,
        f"workspaces/edits/segments/{edited}",
        {"filters": json.loads(original_filters), "matchType": original_match},
    )
    result = snapshot(deployment, "edits")
    assert metadata(result, "edits")["new_definition_versions"] == 1
    # A -> B -> A: three versions, the newest (the current definition) the original one again
    assert versions(deployment, edited) == [*before, before[0]]
    # the same snapshot again adds nothing
    assert metadata(snapshot(deployment, "edits"), "edits")["new_definition_versions"] == 0
    assert versions(deployment, edited) == [*before, before[0]]
    assert original_hash == expected_hash(original_match, json.loads(original_filters))


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_segment_gone_from_a_complete_listing_is_marked_deleted(deployment):
    gone = sorted(truth(deployment, "edits")["segments"])[-1]
    httpx.delete(f"{deployment[0].base_url}/_admin/workspaces/edits/segments/{gone}").raise_for_status()
    result = snapshot(deployment, "edits")
    assert metadata(result, "edits")["deleted_segments"] == 1
    ((deleted_at, last_seen_at),) = rows(
        deployment, "select deleted_at, last_seen_at from segments_api.segments where segment_id = ?", [gone]
    )
    assert deleted_at is not None and deleted_at > last_seen_at


def test_a_listing_that_lacks_most_live_segments_is_held_back_until_confirmed(deployment):
    # after the test above: two live segments are left; both vanish from the listing at once
    live = sorted(truth(deployment, "edits")["segments"])
    assert len(live) == 2
    for segment_id in live:
        httpx.delete(f"{deployment[0].base_url}/_admin/workspaces/edits/segments/{segment_id}").raise_for_status()
    deleted_at = "select count(*) from segments_api.segments where workspace_name = 'edits' and segment_id in (?, ?) "
    with dg.DagsterInstance.ephemeral() as instance:
        result = snapshot(deployment, "edits", instance=instance)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    found = metadata(result, "edits")
    assert (found["deleted_segments"], found["deletions_held_back"]) == (0, 2)
    assert [m for m in messages if "lacks 2 of the 2 segments stored as live" in m and "confirm_deletions: true" in m]
    assert rows(deployment, deleted_at + "and deleted_at is null", live) == [(2,)]
    # the run config confirms them
    config = {"ops": {snapshot_key("edits").to_python_identifier(): {"config": {"confirm_deletions": True}}}}
    found = metadata(snapshot(deployment, "edits", run_config=config), "edits")
    assert (found["deleted_segments"], found["deletions_held_back"]) == (2, 0)
    assert rows(deployment, deleted_at + "and deleted_at is not null", live) == [(2,)]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "the run did not fail"
    return "\n".join(event.event_specific_data.error.to_string() for event in failures)


def test_a_malformed_page_and_a_bad_key_fail_clearly_and_lose_nothing(deployment, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    assert snapshot(deployment, "faults").success
    stored = tables(deployment, "faults")
    assert len(stored["segment_count_snapshots"]) == SEGMENT_COUNTS["faults"]
    admin(deployment, "clock", {"advance_hours": 30})  # recounts since: a partial load would show them

    admin(deployment, "faults", {"kind": "malformed", "variant": "truncated_json", "page": 2, "workspace": "faults"})
    result = snapshot(deployment, "faults", raise_on_error=False)
    text = failure_text(result)
    assert "Segments API workspace 'faults': page 2 of the segments listing is not JSON" in text
    assert tables(deployment, "faults") == stored

    admin(deployment, "workspaces/faults/revoke")
    result = snapshot(deployment, "faults", raise_on_error=False)
    text += failure_text(result)
    assert f"refused the key in {VARIABLES['faults']} (HTTP 401)" in text
    assert tables(deployment, "faults") == stored

    everything = text + caplog.text + "".join(capsys.readouterr()) + "".join(map(str, result.all_events))
    for key in KEYS.values():
        assert key not in everything


def test_each_workspace_has_an_unpartitioned_asset_a_job_and_a_daily_schedule_in_its_timezone(deployment):
    _, defs, _ = deployment
    for name, zone in TIMEZONES.items():
        asset = defs.resolve_assets_def(snapshot_key(name))
        assert asset.partitions_def is None
        assert "history starts at the first snapshot and cannot be backfilled" in asset.descriptions_by_key[
            snapshot_key(name)
        ].replace("\n", " ")
        schedule = defs.resolve_schedule_def(f"snapshot_segments_api_{name}_daily")
        assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * *", zone)
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        job = defs.resolve_job_def(f"snapshot_segments_api_{name}_job")
        assert job.asset_layer.asset_graph.get_all_asset_keys() >= {snapshot_key(name)}
    # the Klaviyo account of the same file keeps its own definitions
    assert defs.resolve_schedule_def("ingest_brand_daily").execution_timezone == "US/Eastern"


# -- the marts built over this file (last in the module: after every snapshot above) ----------------------------


@pytest.fixture(scope="module")
def week_marts(deployment, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The week workspace's rows of the daily mart after one `dbt build`, and after a second one."""
    warehouse = deployment[2]
    work = tmp_path_factory.mktemp("segments_api_dbt")
    # no Klaviyo table at all: a deployment of Segments API workspaces only builds its marts too
    built = []
    for _ in range(2):
        run_dbt(["build"], warehouse, work)
        frame = query(
            warehouse,
            "select * from marts.segment_growth_daily where platform = 'segments_api' and account_id = 'week'",
        )
        built.append(frame.sort_values(["segment_id", "date"]).reset_index(drop=True))
    return built[0], built[1]


def truths_net_changes(deployment) -> dict[tuple[str, dt.date], tuple[int, int | None, int | None]]:
    """From the truth endpoint alone: per segment and local day, the count and its net change and change days.

    A daily snapshot at a moment sees each segment's latest recount up to that moment; of the recounts seen, the
    latest of each local day is that day's count; a day's change is from the previous seen count."""
    epoch = moment(admin(deployment, "clock")["epoch"])
    taken = [epoch + dt.timedelta(hours=at) for at in SNAPSHOT_HOURS]
    zone = ZoneInfo(TIMEZONES["week"])
    expected = {}
    for segment_id, facts in truth(deployment, "week")["segments"].items():
        recounts = [(moment(at), count) for at, count in facts["recounts"]]
        seen = {max((r for r in recounts if r[0] <= at), default=None) for at in taken} - {None}
        by_day = {at.astimezone(zone).date(): count for at, count in sorted(seen)}  # the latest of each day wins
        previous = None
        for day, count in sorted(by_day.items()):
            change = (count - previous[1], (day - previous[0]).days) if previous else (None, None)
            expected[(segment_id, day)] = (count, *change)
            previous = (day, count)
    return expected


def _nullable(value) -> int | None:
    return None if pd.isna(value) else int(value)


def test_the_marts_give_the_truths_net_changes_on_the_right_days(deployment, week_marts):
    daily, _ = week_marts
    expected = truths_net_changes(deployment)
    actual = {
        (row.segment_id, pd.Timestamp(row.date).date()): (
            int(row.total_members),
            _nullable(row.net_members_changed),
            _nullable(row.change_days),
        )
        for row in daily.itertuples()
    }
    assert actual == expected
    # the week really has the cases that matter: changes over several days, and first counts with no change
    assert any(days and days > 1 for _, _, days in expected.values())
    assert sum(change is None for _, change, _ in expected.values()) == SEGMENT_COUNTS["week"]
    assert daily["members_added"].isna().all() and daily["members_removed"].isna().all()


def test_a_second_dbt_build_changes_nothing(week_marts):
    first, second = week_marts
    pd.testing.assert_frame_equal(first, second)


def test_a_warehouse_keyed_before_first_seen_at_joined_the_key_takes_the_new_rows(tmp_path, monkeypatch):
    from segment_pipeline.segments_api import source as source_module
    from segment_pipeline.segments_api.snapshot import DEFINITIONS_SCHEMA
    from segment_pipeline.tables import SEGMENTS_API_DATASET, SEGMENTS_API_DEFINITIONS_TABLE
    from segment_pipeline.warehouse import dlt_pipeline

    def tables_with(definitions: list[dict]) -> dict:
        empty = {
            name: pa_schema.empty_table()
            for name, pa_schema in source_module._SCHEMAS.items()
            if name != SEGMENTS_API_DEFINITIONS_TABLE
        }
        return {**empty, SEGMENTS_API_DEFINITIONS_TABLE: pa.Table.from_pylist(definitions, DEFINITIONS_SCHEMA)}

    def row(definition_hash: str, day: int) -> dict:
        seen = START + dt.timedelta(days=day)
        return {
            "workspace_name": "old",
            "segment_id": "s1",
            "definition_hash": definition_hash,
            "match_type": "all",
            "filters": "[]",
            "first_seen_at": seen,
            "_loaded_at": seen,
        }

    warehouse = tmp_path / "warehouse.duckdb"
    pipeline = dlt_pipeline("segments_api_old", warehouse, tmp_path / "dlt", dataset=SEGMENTS_API_DATASET)
    # the key as an earlier version declared it
    old_keys = {
        **source_module.KEYS,
        SEGMENTS_API_DEFINITIONS_TABLE: ["workspace_name", "segment_id", "definition_hash"],
    }
    with monkeypatch.context() as patch:
        patch.setattr(source_module, "KEYS", old_keys)
        pipeline.run(source_module.segments_api_source(tables_with([row("a", 0), row("b", 1)])))
    # this version: A again after B is a row of its own; a row loaded again is not
    pipeline.run(source_module.segments_api_source(tables_with([row("a", 2)])))
    pipeline.run(source_module.segments_api_source(tables_with([row("a", 2)])))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        stored = connection.execute(
            "select definition_hash, first_seen_at from segments_api.segment_definitions order by first_seen_at"
        ).fetchall()
    assert [(h, seen - START) for h, seen in stored] == [
        ("a", dt.timedelta(0)),
        ("b", dt.timedelta(days=1)),
        ("a", dt.timedelta(days=2)),
    ]
