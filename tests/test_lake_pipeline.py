"""The pipeline on a DuckLake warehouse (a real PostgreSQL catalog, Parquet files in a folder), end to end:
accounts' runs fetch at the same time and take turns writing the lake, with every row exact; the models and
the report follow the lake, with no analyst copy; a PostgreSQL that is down or refuses the password says so
and loses nothing staged."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from segment_pipeline.devtools.postgres import LocalPostgres
from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.ingest.series import load_series
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH
from segment_pipeline.lake import Lake, LakeUnavailableError
from segment_pipeline.settings import load_settings
from segment_pipeline.warehouse import Holder, Warehouse

from .many_accounts import key_of, key_variable, loaded, truth
from .pipeline_helpers import (
    API_KEY,
    CHART,
    FAST,
    MODELS,
    SEGMENTS,
    SERIES,
    definitions,
    lake_env,
    materialize,
    pipeline_env,
    query,
    range_tags,
    series_truth,
    stored_series,
)
from .postgres_fixtures import make_lake

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)

ACCOUNTS = {
    "north": {"timezone": "US/Eastern", "seed": 31, "segment_count": 6},
    "south": {"timezone": "Australia/Sydney", "seed": 32, "segment_count": 5},
    "east": {"timezone": "Asia/Tokyo", "seed": 33, "segment_count": 7},
    "west": {"timezone": "US/Pacific", "seed": 34, "segment_count": 4},
}
DAYS = 20


@pytest.fixture
def lake(postgres, extension_dir, tmp_path, monkeypatch) -> Lake:
    catalog, password = postgres.new_database("wired")
    monkeypatch.setenv("PGPASSWORD", password)  # libpq's, in this process and the ones it starts
    return make_lake(catalog, tmp_path, extension_dir)


def test_four_accounts_at_once_take_turns_on_the_lake_and_every_row_is_exact(make_simulator, lake, tmp_path):
    sim = make_simulator(
        accounts={name: {"api_key": key_of(name), **spec} for name, spec in ACCOUNTS.items()}, speed=FAST
    )
    accounts_file = tmp_path / "accounts.yaml"
    entries = [
        {"name": name, "api_key_env": key_variable(name), "timezone": spec["timezone"], "report_rate_per_minute": 120}
        for name, spec in ACCOUNTS.items()
    ]
    accounts_file.write_text(yaml.safe_dump({"accounts": entries}), encoding="utf-8")
    env = pipeline_env(
        sim,
        tmp_path,
        KLAVIYO_ACCOUNTS_FILE=str(accounts_file),
        PYTHONPATH=str(REPO),
        **lake_env(lake),
        **{key_variable(name): key_of(name) for name in ACCOUNTS},
    )
    ranges = {}
    for name, spec in ACCOUNTS.items():
        yesterday = dt.datetime.now(ZoneInfo(spec["timezone"])).date() - dt.timedelta(days=1)
        ranges[name] = (yesterday - dt.timedelta(days=DAYS - 1), yesterday)
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "tests.lake_account_run", name, str(len(ACCOUNTS)), str(tmp_path / "barrier")]
            + [day.isoformat() for day in ranges[name]],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ACCOUNTS
    }
    outputs = {name: run.communicate(timeout=500) for name, run in runs.items()}
    failed = {name: outputs[name][1][-2000:] for name, run in runs.items() if run.returncode != 0}
    assert not failed, failed
    reports = {name: json.loads(stdout.strip().splitlines()[-1]) for name, (stdout, _) in outputs.items()}
    spans = sorted(report["load"] for report in reports.values())
    # every account went for the lake before any had loaded, and the writer lock made them take turns
    assert max(report["met"] for report in reports.values()) < spans[0][1], reports
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    waited = [name for name, (_, stderr) in outputs.items() if "waiting for the lake's writer lock, held by" in stderr]
    assert len(waited) >= len(ACCOUNTS) - 1, waited

    for name in ACCOUNTS:
        account_id = sim.accounts[name].account_id
        expected = truth(sim, name, *ranges[name])
        assert len(expected) == ACCOUNTS[name]["segment_count"] * DAYS
        assert loaded(lake, account_id, *ranges[name]) == expected, name
        assert reports[name]["rows"] == len(expected)
    # no row twice
    assert query(
        lake,
        "select count(*) = count(distinct (account_id, segment_id, date)) from klaviyo.segment_series_daily",
    ) == [(True,)]
    assert query(lake, "select count(distinct account_id) from klaviyo.segments") == [(len(ACCOUNTS),)]
    # taking turns, the writers never met a commit conflict
    conflict = re.compile("(?i)commit conflict|transaction conflict")
    conflicted = [name for name, (_, stderr) in outputs.items() if conflict.search(stderr)]
    assert not conflicted, conflicted


def test_the_models_and_the_report_follow_the_lake_without_an_analyst_copy(make_simulator, lake, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=6, speed=FAST)
    env = lake_env(lake)
    defs = definitions(sim, tmp_path, **env)
    assert not any(key.path == ["analytics", "warehouse_copy"] for assets in defs.assets for key in assets.keys)
    last = sim.account.today() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=9)
    materialize([SEGMENTS], sim, tmp_path, defs=defs)
    materialize([SERIES], sim, tmp_path, defs=defs, tags=range_tags(first, last))
    materialize([MODELS, CHART], sim, tmp_path, defs=defs)

    expected = {(sid, day): stats[0] for (sid, day), stats in stored_series(lake).items()}
    assert len(expected) == 6 * 10
    marts = query(lake, "select segment_id, date, total_members from marts.segment_growth_daily")
    assert {(sid, day): total for sid, day, total in marts if first <= day <= last} == expected
    assert not (tmp_path / "warehouse.duckdb").exists() and not (tmp_path / "analytics.duckdb").exists()
    page = (tmp_path / "charts" / "segment_growth.html").read_text(encoding="utf-8")
    assert f"from the DuckLake {lake.catalog.describe()}" in page


class DownAtTheLoad(Warehouse):
    """The deployment's warehouse, whose PostgreSQL stops right after the responses were fetched."""

    cluster: LocalPostgres | None = None

    def load(self, pipeline, data, holder=None) -> None:
        if type(self).cluster is not None and pipeline.pipeline_name.startswith("klaviyo_series"):
            type(self).cluster.stop()
            type(self).cluster = None
        super().load(pipeline, data, holder)


def test_a_postgres_down_or_refusing_the_password_loses_nothing_staged(
    make_simulator, server_dir, extension_dir, tmp_path, monkeypatch
):
    cluster = LocalPostgres(server_dir, log=lambda _: None)
    server = cluster.start()
    cluster.ensure_database(server, "lake", "pipeline", "right-password")
    monkeypatch.setenv("PGPASSWORD", "right-password")
    lake = Lake.from_url("ducklake:postgres:" + server.dsn("lake", "pipeline"), tmp_path / "data", extension_dir)
    sim = make_simulator(api_key=API_KEY, segment_count=5, speed=FAST)
    env = pipeline_env(sim, tmp_path, **lake_env(lake))
    materialize([SEGMENTS], sim, tmp_path, env=lake_env(lake))
    settings = load_settings(env)
    access = KlaviyoAccess(settings, settings.accounts["default"])
    # days old enough to be final once fetched: a later run has no reason to ask for them again
    last = sim.account.today() - dt.timedelta(days=20)
    first = last - dt.timedelta(days=6)
    holder = Holder(run_id="outage", step="series")
    staged = settings.storage.series_staging_dir

    # PostgreSQL goes down after the responses were fetched: the load says so, the responses stay staged
    DownAtTheLoad.cluster = cluster
    with pytest.raises(LakeUnavailableError, match="cannot reach the lake's PostgreSQL catalog pipeline@127.0.0.1"):
        load_series(access, DownAtTheLoad(settings.storage), first, last, holder=holder, log=_log())
    files = sorted(staged.rglob("*.parquet"))
    assert files and sim.count(path=SEGMENT_SERIES_PATH) == 1

    # back up, with a wrong password: a run (a fresh process, as Dagster starts each) is refused before anything
    # is asked of Klaviyo, and the password is never shown
    assert cluster.start().port == server.port
    sim.reset_log()
    refused = subprocess.run(
        [sys.executable, "-m", "tests.lake_account_run", "default", "0", "-", first.isoformat(), last.isoformat()],
        cwd=REPO,
        env={**env, "PGPASSWORD": "wrong-password", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "LakeUnavailableError: the lake's PostgreSQL catalog pipeline@127.0.0.1" in refused.stderr
    assert "refused the login of user 'pipeline'" in refused.stderr and "PGPASSWORD" in refused.stderr
    assert "wrong-password" not in refused.stderr + refused.stdout
    assert sorted(staged.rglob("*.parquet")) == files and sim.count(path=SEGMENT_SERIES_PATH) == 0

    # the right password: the staged responses load, nothing is asked again, every row exact
    monkeypatch.setenv("PGPASSWORD", "right-password")
    outcome = load_series(access, Warehouse(settings.storage), first, last, holder=holder, log=_log())
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0 and not list(staged.rglob("*.parquet"))
    assert outcome.cells_still_missing == 0
    expected = {
        (s.id, row["date"]): row["total_members"]
        for s in sim.account.segments
        for row in sim.account.series(s.id, first, last)
    }
    stored = {key: stats[0] for key, stats in stored_series(lake).items() if first <= key[1] <= last}
    assert stored == expected


def _log():
    import logging

    return logging.getLogger("test_lake_pipeline")


def test_the_copy_command_moves_a_file_warehouse_over_once_and_the_pipeline_carries_on(make_simulator, lake, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=5, speed=FAST)
    last = sim.account.today() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=9)
    # a file warehouse with the first five days
    materialize([SEGMENTS], sim, tmp_path)
    materialize([SERIES], sim, tmp_path, tags=range_tags(first, first + dt.timedelta(days=4)))
    file_rows = stored_series(tmp_path / "warehouse.duckdb")
    assert len(file_rows) == 5 * 5

    env = pipeline_env(sim, tmp_path, **lake_env(lake))
    command = [str(Path(sys.executable).parent / "segment-pipeline"), "lake", "copy", "--from"]
    command.append(str(tmp_path / "warehouse.duckdb"))
    copied = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert copied.returncode == 0, copied.stderr
    assert re.search(r"klaviyo\.segment_series_daily\s+25 rows\s+copied", copied.stdout), copied.stdout
    assert stored_series(lake) == file_rows
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 table(s) and 0 row(s) copied" in again.stdout and "copied by an earlier run" in again.stdout
    assert stored_series(lake) == file_rows

    # the pipeline on the lake carries on: the other five days are fetched, nothing is stored twice
    materialize([SERIES], sim, tmp_path, env=lake_env(lake), tags=range_tags(first, last))
    assert stored_series(lake) == series_truth(sim, first, last)
    assert query(lake, "select count(*), count(distinct (segment_id, date)) from klaviyo.segment_series_daily") == [
        (50, 50)
    ]


def test_the_analyst_line_reads_the_lake_read_only(lake, tmp_path):
    from segment_pipeline.lake.command import analyst_command

    line = analyst_command(lake)
    assert line.startswith("duckdb -cmd ") and "READ_ONLY" in line and "PGPASSWORD" not in line


def test_a_segments_api_workspace_snapshots_into_the_lake(lake, tmp_path):
    import dagster as dg

    from segment_pipeline.defs.deployment import build_definitions
    from segment_pipeline.defs.segments_api import snapshot_key
    from segments_api_simulator import SegmentsApiSimulator, World

    world = World(seed=7, start=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3))
    world.add_workspace("shop", "sak_live_shop_0a1b2c3d4e5f", 5)
    accounts = [
        {"name": "brand", "api_key_env": "KLAVIYO_KEY_BRAND", "timezone": "UTC"},
        {"name": "shop", "platform": "segments_api", "api_key_env": "SEGMENTS_API_KEY_SHOP", "timezone": "UTC"},
    ]
    (tmp_path / "accounts.yaml").write_text(yaml.safe_dump({"accounts": accounts}), encoding="utf-8")
    with SegmentsApiSimulator(world) as simulator:
        env = {
            "KLAVIYO_ACCOUNTS_FILE": str(tmp_path / "accounts.yaml"),
            "KLAVIYO_KEY_BRAND": "pk_not_used_in_this_test",
            "SEGMENTS_API_BASE_URL": simulator.base_url,
            "SEGMENTS_API_KEY_SHOP": "sak_live_shop_0a1b2c3d4e5f",
            "PIPELINE_STATE_DIR": str(tmp_path / "state"),
            **lake_env(lake),
        }
        defs = build_definitions(load_settings(env))

        def snapshot() -> dg.ExecuteInProcessResult:
            selection = dg.AssetSelection.assets(snapshot_key("shop"))
            result = dg.materialize([*defs.assets, *defs.asset_checks], selection=selection, resources=defs.resources)
            assert result.success
            (check,) = result.get_asset_check_evaluations()
            assert check.passed, check.metadata  # no key twice, read from the lake
            return result

        snapshot()
        facts = world.truth("shop")["segments"]
        latest = {segment_id: fact["recounts"][-1] for segment_id, fact in facts.items() if fact["recounts"]}
        assert latest
        stored = query(
            lake,
            "select segment_id, last_counted_at, cached_count from segments_api.segment_count_snapshots "
            "where workspace_name = 'shop'",
        )
        assert {row[0]: (row[1], row[2]) for row in stored} == {
            segment_id: (dt.datetime.fromisoformat(at.replace("Z", "+00:00")), count)
            for segment_id, (at, count) in latest.items()
        }
        tables = ("segments", "segment_definitions", "segment_count_snapshots")
        counts = [query(lake, f"select count(*) from segments_api.{table}")[0][0] for table in tables]
        assert counts == [5, 5, len(latest)]
        # a second snapshot at the same moment adds nothing
        snapshot()
        assert [query(lake, f"select count(*) from segments_api.{table}")[0][0] for table in tables] == counts
