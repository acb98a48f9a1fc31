"""Segment filters: requests only for the chosen segments."""

from __future__ import annotations

import json

from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .many_accounts import deployment_env, start_backfills, start_simulator
from .pipeline_helpers import query


def test_segment_filters_send_requests_only_for_the_chosen_segments(make_simulator, tmp_path):
    sim = start_simulator(make_simulator)
    env = deployment_env(
        sim,
        tmp_path,
        sydney={"segments": {"is_starred": False}},
        los_angeles={"segments": {"name_matches": ["[a-m]*"]}},
    )
    assert all(run.finish(timeout=240) == 0 for run in start_backfills(env).values())

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
            if entry.path == SEGMENT_SERIES_PATH and entry.account == name:
                body = json.dumps(entry.json)
                sent |= {segment_id for segment_id in every_id if segment_id in body}
        assert sent == ids, name
        stored = query(
            tmp_path / "warehouse.duckdb",
            "select distinct segment_id from klaviyo.segment_series_daily where account_id = ?",
            [sim.accounts[name].account_id],
        )
        assert {row[0] for row in stored} == ids, name
