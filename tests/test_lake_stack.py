"""The stack on a real DuckLake (PostgreSQL catalog, Parquet data path): dlt merges, dbt builds incrementally,
analysts read with DuckDB, four writers wanting the lake at once take turns, and an unusable catalog says so and
loses nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml

from segment_pipeline.devtools.postgres import LocalPostgres
from segment_pipeline.lake import Lake, LakeUnavailableError
from segment_pipeline.lake.errors import retry_commit_conflicts
from segment_pipeline.lake.loading import run_pipeline

from .lake_helpers import FIRST_DAY, lake_pipeline, read, series, series_resource
from .lake_writer import SEEDED_DAYS, SEGMENTS, UPDATE_OFFSET, UPDATED_DAYS

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lake(postgres, extension_dir, tmp_path_factory):
    catalog, password = postgres.new_database("stack")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", password)
        yield Lake(catalog=catalog, data_path=tmp_path_factory.mktemp("lake") / "data", extension_dir=extension_dir)


def expected_members(day: int, segment: int, offset: int) -> int:
    return day * 10 + segment + offset


def test_dlt_merges_arrow_tables_on_natural_keys_and_analysts_read_them_read_only(lake, postgres, tmp_path):
    pipeline = lake_pipeline(lake, "merge_demo", tmp_path / "dlt")
    run_pipeline(lake, pipeline, series_resource(series("acme", range(0, 10), 3), "merge_demo"))
    first_snapshot = read(lake, "select max(snapshot_id) from lake.snapshots()")[0][0]
    # a re-load of days 5-9 with new values, and days 10-11: merged on (account, segment, date), never appended
    run_pipeline(lake, pipeline, series_resource(series("acme", range(5, 12), 3, offset=500), "merge_demo"))
    rows = read(lake, "select segment_id, date, total_members from klaviyo.merge_demo order by all")
    expected = [
        (f"seg{s:03d}", FIRST_DAY.fromordinal(FIRST_DAY.toordinal() + d), expected_members(d, s, 500 if d >= 5 else 0))
        for s in range(3)
        for d in range(12)
    ]
    assert rows == expected
    assert read(lake, "select count(*) from klaviyo._dlt_loads where schema_name = 'merge_demo'") == [(2,)]

    # analysts: a read-only attach (DuckDB refuses writes) as a read-only role (PostgreSQL refuses them too)
    reader_password = "analyst-password"
    postgres.local.grant_read_only(postgres.server, lake.catalog.dbname, lake.catalog.user, "analyst", reader_password)
    analyst_lake = dataclasses.replace(lake, catalog=dataclasses.replace(lake.catalog, user="analyst"))
    env = {**os.environ, "PGPASSWORD": reader_password}
    script = (
        "import duckdb, sys; c = duckdb.connect(); c.execute(sys.argv[1]);"
        "print(c.execute('select count(*), sum(total_members) from klaviyo.merge_demo').fetchone());"
        "print(c.execute(f'select sum(total_members) from klaviyo.merge_demo at (version => {sys.argv[2]})')"
        ".fetchone())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, analyst_lake.analyst_sql(), str(first_snapshot)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    count, total = read(lake, "select count(*), sum(total_members) from klaviyo.merge_demo")[0]
    assert result.stdout.splitlines()[0] == f"({count}, {total})"
    # time travel: the lake as it was after the first load
    first_total = sum(expected_members(d, s, 0) for s in range(3) for d in range(10))
    assert result.stdout.splitlines()[1] == f"({first_total},)"
    with pytest.raises(duckdb.Error, match="read-only"):
        read(lake, "insert into klaviyo.merge_demo select * from klaviyo.merge_demo limit 1")


def test_dbt_attaches_the_lake_and_builds_an_incremental_model(lake, tmp_path):
    def write_source(days: range, offset: int) -> None:
        connection = lake.connect()
        try:
            rows = series("acme", days, 2, offset)  # noqa: F841 - DuckDB reads the Arrow table by its name
            connection.execute("create schema if not exists klaviyo")
            connection.execute("create table if not exists klaviyo.dbt_source as select * from rows limit 0")
            connection.execute("delete from klaviyo.dbt_source where date in (select date from rows)")
            connection.execute("insert into klaviyo.dbt_source select * from rows")
        finally:
            connection.close()

    write_source(range(0, 10), 0)
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: lake_demo\nversion: '1.0'\nconfig-version: 2\nprofile: lake_demo\nmodel-paths: [models]\n"
        "flags: {send_anonymous_usage_stats: false}\n"
    )
    (project / "profiles.yml").write_text(
        yaml.safe_dump({"lake_demo": {"target": "lake", "outputs": {"lake": lake.dbt_output(schema="marts")}}})
    )
    (project / "models" / "sources.yml").write_text(
        "sources: [{name: raw, schema: klaviyo, tables: [{name: dbt_source}]}]\n"
    )
    (project / "models" / "daily_totals.sql").write_text(
        "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key=['date']) }}\n"
        "select date, sum(total_members) as total, '{{ invocation_id }}' as built_by\n"
        "from {{ source('raw', 'dbt_source') }}\n"
        "{% if is_incremental() %} where date >= (select max(date) from {{ this }}) {% endif %}\n"
        "group by date\n"
    )

    def dbt_build() -> None:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "dbt"),
                "build",
                "--project-dir",
                str(project),
                "--profiles-dir",
                str(project),
            ],
            cwd=project,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout[-3000:]

    dbt_build()
    first_build = read(lake, "select max(built_by) from marts.daily_totals")[0][0]
    # day 9 changes and days 10-12 arrive; the incremental run rebuilds from day 9 on and leaves days 0-8 alone
    write_source(range(9, 13), 7)
    dbt_build()
    rows = read(lake, "select date, total, built_by = ? from marts.daily_totals order by date", [first_build])
    assert [(d.toordinal() - FIRST_DAY.toordinal(), total, untouched) for d, total, untouched in rows] == [
        (day, sum(expected_members(day, s, 7 if day >= 9 else 0) for s in range(2)), day < 9) for day in range(13)
    ]


def test_four_writers_at_once_take_turns_and_keep_every_row(lake, tmp_path):
    accounts = ["north", "south", "east", "west"]
    seed = lake_pipeline(lake, "series_seed", tmp_path / "dlt" / "seed")
    seeded = pa.concat_tables([series(account, SEEDED_DAYS, SEGMENTS) for account in accounts])
    run_pipeline(lake, seed, series_resource(seeded))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.lake_writer",
                lake.catalog.url(),
                lake.data_path,
                str(lake.extension_dir),
                str(tmp_path),
                account,
                str(len(accounts)),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for account in accounts
    ]
    outputs = [writer.communicate(timeout=240) for writer in writers]
    for writer, (_, stderr) in zip(writers, outputs):
        assert writer.returncode == 0, stderr[-3000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    spans = sorted(report["load"] for report in reports)
    # all four went for the lake before any had loaded, and the writer lock made them take turns
    assert max(report["wanted"] for report in reports) < spans[0][1], reports
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    assert sum("waiting for the lake's writer lock, held by segment-pipeline" in stderr for _, stderr in outputs) >= 3

    offsets = {day: 0 for day in SEEDED_DAYS} | {day: UPDATE_OFFSET for day in UPDATED_DAYS}
    expected = sorted(
        (account, f"seg{s:03d}", day, expected_members(day, s, offset))
        for account in accounts
        for s in range(SEGMENTS)
        for day, offset in offsets.items()
    )
    rows = read(
        lake,
        "select account_id, segment_id, date - date '2026-01-01', total_members from klaviyo.segment_series_daily "
        "where account_id in ('north', 'south', 'east', 'west') order by all",
    )
    assert rows == expected  # every row once, with its latest value
    # taking turns, no writer met a commit conflict
    assert not any("Transaction conflict" in stderr for _, stderr in outputs)


def test_a_commit_conflict_is_retried_and_the_write_kept_once(lake):
    setup = lake.connect()
    setup.execute("create or replace table main.counters as select range as k, 0 as v from range(10)")
    messages: list[str] = []
    attempts: list[int] = []

    def add_one_to_the_first_five() -> None:
        connection = lake.connect()
        try:
            connection.execute("begin")
            connection.execute("update main.counters set v = v + 1 where k < 5")
            if not attempts:
                # meanwhile another writer changes the same table and commits first
                setup.execute("update main.counters set v = v + 10 where k >= 5")
            attempts.append(1)
            connection.execute("commit")
        finally:
            connection.close()

    retry_commit_conflicts(add_one_to_the_first_five, log=messages.append)
    assert len(attempts) == 2 and "commit conflict" in messages[0]
    assert setup.execute("select k, v from main.counters order by k").fetchall() == [
        (k, 1 if k < 5 else 10) for k in range(10)
    ]
    setup.close()


def test_a_catalog_down_or_refusing_the_password_is_said_plainly_and_loses_nothing(
    server_dir, extension_dir, tmp_path, monkeypatch
):
    cluster = LocalPostgres(server_dir, log=lambda _: None)
    server = cluster.start()
    cluster.ensure_database(server, "lake", "pipeline", "right-password")
    lake = Lake.from_url("ducklake:postgres:" + server.dsn("lake", "pipeline"), tmp_path / "data", extension_dir)

    monkeypatch.setenv("PGPASSWORD", "wrong-password")
    with pytest.raises(LakeUnavailableError, match="refused the login of user 'pipeline'.*PGPASSWORD") as refused:
        lake.connect()
    assert "wrong-password" not in str(refused.value)

    monkeypatch.setenv("PGPASSWORD", "right-password")
    pipeline = lake_pipeline(lake, "outage", tmp_path / "dlt")
    run_pipeline(lake, pipeline, series_resource(series("acme", range(0, 3), 2)))
    # the next load is staged (extracted, normalized) when PostgreSQL goes down
    pipeline.extract(series_resource(series("acme", range(3, 6), 2)))
    pipeline.normalize()
    cluster.stop()
    where = f"pipeline@127.0.0.1:{server.port}/lake"
    with pytest.raises(LakeUnavailableError, match=f"cannot reach the lake's PostgreSQL catalog {where}"):
        run_pipeline(lake, pipeline, None)
    assert pipeline.list_normalized_load_packages()  # what was staged is still there

    assert cluster.start().port == server.port
    run_pipeline(lake, pipeline, None)
    assert not pipeline.list_normalized_load_packages()
    assert read(lake, "select count(*), count(distinct (segment_id, date)) from klaviyo.segment_series_daily") == [
        (12, 12)
    ]
