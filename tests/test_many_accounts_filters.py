"""Segment filters: series requests only for the chosen segments (each account's ingestion, in-process)."""

from __future__ import annotations

import json

import dagster as dg

from segment_pipeline.defs.deployment import build_definitions
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH, SEGMENT_VALUES_PATH
from segment_pipeline.reconciliation import CHECK_NAME
from segment_pipeline.settings import load_settings

from .many_accounts import ACCOUNTS, deployment_env, local_range, start_simulator
from .pipeline_helpers import query, range_tags


def account_assets(defs: dg.Definitions, name: str) -> list:
    """The account's ingestion assets (its segments and its series)."""
    ingest = [a for a in defs.assets if any(k.path[:2] == ["klaviyo", name] for k in a.keys)]
    assert len(ingest) == 2, name
    return ingest


def backfill_in_process(env: dict[str, str]) -> None:
    """Each account's segments and series for its range, one account after the other, in this process."""
    defs = build_definitions(load_settings(env))
    for name in ACCOUNTS:
        # with the account's reconciliation check, which asks Klaviyo's values report
        (check,) = [
            c
            for c in defs.asset_checks
            if c.check_key.asset_key.path[:2] == ["klaviyo", name] and c.check_key.name == CHECK_NAME
        ]
        result = dg.materialize(
            [*account_assets(defs, name), check], resources=defs.resources, tags=range_tags(*local_range(name))
        )
        assert result.success, name
        # untracked segments have no series: comparing them with Klaviyo would be a false alarm
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.passed, (name, evaluation.description)


def test_segment_filters_send_requests_only_for_the_chosen_segments(make_simulator, tmp_path):
    sim = start_simulator(make_simulator)
    env = deployment_env(
        sim,
        tmp_path,
        sydney={"segments": {"is_starred": False}},
        los_angeles={"segments": {"name_matches": ["[a-m]*"]}},
    )
    backfill_in_process(env)

    chosen = {
        "sydney": {s.id for s in sim.accounts["sydney"].account.segments if not s.is_starred},
        "los_angeles": {
            s.id for s in sim.accounts["los_angeles"].account.segments if s.name[:1].lower() in "abcdefghijklm"
        },
        "london": {s.id for s in sim.accounts["london"].account.segments},
    }
    assert chosen["sydney"] and chosen["los_angeles"]
    for name, ids in chosen.items():
        every_id = {s.id for s in sim.accounts[name].account.segments}
        sent = set()
        for entry in sim.requests:
            if entry.path in (SEGMENT_SERIES_PATH, SEGMENT_VALUES_PATH) and entry.account == name:
                body = json.dumps(entry.json)
                sent |= {segment_id for segment_id in every_id if segment_id in body}
        assert sent == ids, name
        stored = query(
            tmp_path / "warehouse.duckdb",
            "select distinct segment_id from klaviyo.segment_series_daily where account_id = ?",
            [sim.accounts[name].account_id],
        )
        assert {row[0] for row in stored} == ids, name


def test_a_filter_that_matches_nothing_fails_before_any_report_request(make_simulator, tmp_path):
    sim = start_simulator(make_simulator)
    env = deployment_env(sim, tmp_path, sydney={"segments": {"name_matches": "no segment is called this"}})
    defs = build_definitions(load_settings(env))
    result = dg.materialize(
        account_assets(defs, "sydney"),
        resources=defs.resources,
        tags=range_tags(*local_range("sydney")),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    # the segments step and the account check did send requests: only report requests were spared
    assert "passes its segment filter" in message and "no report request was sent" in message, message
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0 and sim.count(path="/api/accounts") > 0
