"""Moving over: a file warehouse copied into a lake with all its history, once, however often the copy runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import dlt
import duckdb
import pytest

from segment_pipeline.lake import Lake
from segment_pipeline.lake import copy as lake_copy
from segment_pipeline.lake.copy import CopyRefusedError, copy_file_warehouse
from segment_pipeline.lake.loading import run_pipeline

from .lake_helpers import lake_pipeline, read, series, series_resource

pytestmark = pytest.mark.timeout(300)


@dlt.source(name="klaviyo_series")
def klaviyo_series(days: range, offset: int, cursor: str):
    yield series_resource(series("acme", days, 3, offset))

    @dlt.resource(name="segments", primary_key="id", write_disposition="merge")
    def segments():
        dlt.current.source_state()["cursor"] = cursor  # what a pipeline on the lake must find again
        for number in range(3):
            yield {
                "id": f"seg{number:03d}",
                "definition": {"condition_groups": [{"conditions": [{"type": "profile", "n": number}]}]},
                "tags": [f"tag{number}", "all"],
            }

    yield segments().apply_hints(columns={"definition": {"data_type": "json"}})


@pytest.fixture(scope="module")
def file_warehouse(tmp_path_factory):
    """A DuckDB file as the file warehouse has it: two dlt loads (merge, JSON, lists, state), marts, a view."""
    folder = tmp_path_factory.mktemp("file_warehouse")
    path = folder / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="klaviyo_series",
        pipelines_dir=str(folder / "dlt"),
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="klaviyo",
    )
    pipeline.run(klaviyo_series(range(0, 8), 0, "first"))
    pipeline.run(klaviyo_series(range(6, 10), 100, "second"))
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema marts")
        connection.execute(
            "create table marts.daily as select date, sum(total_members) as total from klaviyo.segment_series_daily "
            "group by date"
        )
        connection.execute("create schema staging")
        connection.execute("create view staging.series as select * from klaviyo.segment_series_daily")
    return path


@pytest.fixture
def lake(postgres, extension_dir, tmp_path, monkeypatch):
    catalog, password = postgres.new_database("copy")
    monkeypatch.setenv("PGPASSWORD", password)
    return Lake(catalog=catalog, data_path=tmp_path / "lake_data", extension_dir=extension_dir)


def file_tables(path) -> dict[str, list]:
    """Every base table of the file outside dlt's staging dataset, with all its rows (sorted)."""
    with duckdb.connect(str(path), read_only=True) as connection:
        names = connection.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name <> 'klaviyo_staging'"
        ).fetchall()
        return {
            f"{s}.{t}": sorted(map(repr, connection.execute(f"select * from {s}.{t}").fetchall())) for s, t in names
        }


def lake_rows(lake: Lake, name: str) -> list:
    return sorted(map(repr, read(lake, f"select * from {name}")))


def test_every_table_and_row_is_copied_once_and_dlt_carries_on_from_the_copied_state(file_warehouse, lake, tmp_path):
    expected = file_tables(file_warehouse)
    assert {"klaviyo._dlt_loads", "klaviyo._dlt_version", "klaviyo._dlt_pipeline_state", "marts.daily"} <= set(expected)

    report = copy_file_warehouse(file_warehouse, lake)
    assert {f"{t.schema}.{t.table}": t.rows for t in report.tables} == {
        name: len(rows) for name, rows in expected.items()
    }
    assert report.tables_copied == len(expected)
    assert report.rows_copied == sum(len(rows) for rows in expected.values())
    assert report.views == ["staging.series"]
    assert report.dlt_staging and all(name.startswith("klaviyo_staging.") for name in report.dlt_staging)
    for name, rows in expected.items():
        assert lake_rows(lake, name) == rows, name  # every row, every value, the history included
    text = "\n".join(report.lines())
    assert f"{report.tables_copied} table(s) and {report.rows_copied:,} row(s) copied." in text
    assert "Not copied: 1 view(s)" in text
    for name, rows in expected.items():
        assert re.search(rf"^  {re.escape(name)} +{len(rows):,} rows? +copied$", text, re.MULTILINE), name

    again = copy_file_warehouse(file_warehouse, lake)
    assert again.tables_copied == 0 and again.rows_copied == 0
    assert "had been copied before" in again.lines()[-1]
    for name, rows in expected.items():
        assert lake_rows(lake, name) == rows, name  # nothing twice

    # a pipeline of the same name on the lake finds its state and schema, and merges into the copied tables
    pipeline = lake_pipeline(lake, "klaviyo_series", tmp_path / "dlt_on_lake")
    pipeline.sync_destination()
    assert pipeline.state["sources"]["klaviyo_series"]["cursor"] == "second"
    run_pipeline(lake, pipeline, klaviyo_series(range(9, 12), 200, "third"))
    assert read(
        lake,
        "select count(*), count(distinct (segment_id, date)), max(date) - date '2026-01-01' "
        "from klaviyo.segment_series_daily",
    ) == [(36, 36, 11)]


def test_a_copy_cut_short_is_finished_by_the_next_run(file_warehouse, lake, monkeypatch):
    copy_table = lake_copy._copy_table
    calls: list[str] = []

    class InterruptedBeforeTheRecord:
        """The third table's rows are in, its record not yet: then the operator's Ctrl-C arrives."""

        def __init__(self, connection):
            self.connection = connection

        def execute(self, sql, *args):
            if lake_copy.COPIES_TABLE in sql and sql.startswith("insert"):
                raise KeyboardInterrupt
            return self.connection.execute(sql, *args)

    def interrupted_on_the_third(connection, lake_, table, source):
        calls.append(table.table)
        copy_table(InterruptedBeforeTheRecord(connection) if len(calls) == 3 else connection, lake_, table, source)

    monkeypatch.setattr(lake_copy, "_copy_table", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        copy_file_warehouse(file_warehouse, lake)
    monkeypatch.setattr(lake_copy, "_copy_table", copy_table)

    report = copy_file_warehouse(file_warehouse, lake)
    expected = file_tables(file_warehouse)
    assert report.tables_copied == len(expected) - 2
    for name, rows in expected.items():
        assert lake_rows(lake, name) == rows, name


def test_the_copy_refuses_to_mix_histories_or_to_read_a_file_in_use(file_warehouse, lake, tmp_path):
    # the lake already has a table the copy did not write: nothing is copied
    connection = lake.connect()
    connection.execute("create schema marts")
    connection.execute("create table marts.daily as select 1 as total")
    connection.close()
    with pytest.raises(CopyRefusedError, match=r"already holds marts\.daily.*Nothing was copied"):
        copy_file_warehouse(file_warehouse, lake)
    assert read(lake, "select count(*) from duckdb_tables() where schema_name = 'klaviyo'") == [(0,)]

    # the file changed after it was copied
    connection = lake.connect()
    connection.execute("drop table marts.daily")
    connection.close()
    changed = tmp_path / "changed.duckdb"
    shutil.copy(file_warehouse, changed)
    copy_file_warehouse(changed, lake)
    with duckdb.connect(str(changed)) as writer:
        writer.execute("insert into marts.daily select * from marts.daily limit 1")
    with pytest.raises(CopyRefusedError, match=r"changed after it was copied: marts\.daily \(\d+ rows then, \d+ now\)"):
        copy_file_warehouse(changed, lake)

    # a pipeline step holds the file
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(600)",
            str(changed),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CopyRefusedError, match=f"in use by .*PID {holder.pid}.*nothing was copied"):
            copy_file_warehouse(changed, lake)
    finally:
        holder.kill()
        holder.wait()
