"""The analyst copy (atomic publish, lock errors, cleanup) and the growth charts, on small hand-made files."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from segment_pipeline import publish as publish_module
from segment_pipeline.charts import write_growth_charts
from segment_pipeline.publish import (
    PublishError,
    WarehouseLockedError,
    WarehouseNotFoundError,
    publish_analytics_copy,
)
from segment_pipeline.report_packing import page_elements, read_page, unpack

pytestmark = pytest.mark.timeout(120)


def make_warehouse(path: Path, version: int) -> None:
    """A tiny warehouse shaped like the real one: a raw table, a mart and a view over it."""
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema if not exists klaviyo")
        connection.execute("create schema if not exists marts")
        connection.execute("create schema if not exists staging")
        connection.execute("create or replace table klaviyo.accounts as select 'acct' as account_id, 'UTC' as timezone")
        connection.execute(f"create or replace table marts.published as select {version} as version")
        connection.execute("create or replace view staging.published_view as select version from marts.published")


def read_version(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute("select version from marts.published").fetchone()[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".tmp.wal")))


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    make_warehouse(path, version=1)
    return path


class HeldConnection:
    """A DuckDB connection held open by another process (DuckDB locks are per process)."""

    def __init__(self, path: Path, *, read_only: bool, script: str = "") -> None:
        program = textwrap.dedent(f"""
            import sys, duckdb
            connection = duckdb.connect({str(path)!r}, read_only={read_only})
            print("ready", flush=True)
            sys.stdin.readline()
            {script}
        """)
        self.process = subprocess.Popen(
            [sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout.readline().strip() == "ready"

    def finish(self) -> str:
        output, _ = self.process.communicate("go\n", timeout=60)
        assert self.process.returncode == 0
        return output

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


# ---------------------------------------------------------------------------------------------------------
# publish
# ---------------------------------------------------------------------------------------------------------


def test_publish_copies_every_table_and_view(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "analytics.duckdb"
    stats = publish_analytics_copy(warehouse, target)
    assert stats["path"] == str(target)
    assert stats["tables_copied"] == 2 and stats["views_copied"] == 1
    assert stats["tables"] == ["klaviyo.accounts", "marts.published"]
    assert stats["size_bytes"] == target.stat().st_size > 0
    with duckdb.connect(str(target), read_only=True) as connection:
        assert connection.execute("select version from staging.published_view").fetchone() == (1,)
    assert leftovers(target.parent) == []
    assert not target.with_name(target.name + ".wal").exists()


def test_publish_replaces_the_copy_while_an_analyst_reads_it(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    publish_analytics_copy(warehouse, target)
    # the analyst keeps one connection on the old copy across the publish, then reconnects
    analyst = HeldConnection(
        target,
        read_only=True,
        script=f"""
            print(connection.execute("select version from marts.published").fetchone()[0])
            connection.close()
            reopened = duckdb.connect({str(target)!r}, read_only=True)
            print(reopened.execute("select version from marts.published").fetchone()[0])
    """,
    )
    try:
        make_warehouse(warehouse, version=2)
        publish_analytics_copy(warehouse, target)  # must not wait for, or break, the analyst
        assert read_version(target) == 2
        old_session, new_session = analyst.finish().split()
    finally:
        analyst.kill()
    assert (old_session, new_session) == ("1", "2")
    assert leftovers(tmp_path) == []


def test_a_locked_warehouse_is_reported_with_the_process_holding_it(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    publish_analytics_copy(warehouse, target)
    writer = HeldConnection(warehouse, read_only=False)
    try:
        with pytest.raises(WarehouseLockedError) as raised:
            publish_analytics_copy(warehouse, target)
    finally:
        writer.kill()
    message = str(raised.value)
    assert str(warehouse) in message and f"PID {writer.process.pid}" in message
    assert "publish again" in message
    assert read_version(target) == 1  # the previous copy is untouched
    assert leftovers(tmp_path) == []


def test_a_missing_warehouse_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WarehouseNotFoundError, match="does not exist") as raised:
        publish_analytics_copy(tmp_path / "nowhere.duckdb", tmp_path / "analytics.duckdb")
    assert isinstance(raised.value, FileNotFoundError)
    assert not (tmp_path / "analytics.duckdb").exists()


def test_publishing_onto_the_warehouse_itself_is_refused(warehouse: Path) -> None:
    with pytest.raises(PublishError, match="different file"):
        publish_analytics_copy(warehouse, warehouse)


def test_a_failed_publish_leaves_the_old_copy_and_no_temp_file(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "analytics.duckdb"
    publish_analytics_copy(warehouse, target)
    make_warehouse(warehouse, version=2)

    def failing_replace(source, destination):
        raise OSError("disk on fire")

    monkeypatch.setattr(publish_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        publish_analytics_copy(warehouse, target)
    assert read_version(target) == 1
    assert leftovers(tmp_path) == []


def test_a_stale_wal_of_the_old_copy_does_not_leak_into_the_new_one(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    publish_analytics_copy(warehouse, target)
    # someone opened the copy read-write and left a WAL behind
    with duckdb.connect(str(target)) as connection:
        connection.execute("pragma disable_checkpoint_on_shutdown")
        connection.execute("set checkpoint_threshold = '1GB'")
        connection.execute("create table marts.scribble as select 1 as x")
    assert target.with_name(target.name + ".wal").exists()
    publish_analytics_copy(warehouse, target)
    assert not target.with_name(target.name + ".wal").exists()
    with duckdb.connect(str(target), read_only=True) as connection:
        tables = {row[0] for row in connection.execute("select table_name from duckdb_tables()").fetchall()}
    assert tables == {"accounts", "published"}


def test_the_copy_can_be_written_for_older_duckdb_clients(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    stats = publish_analytics_copy(warehouse, target, storage_version="v1.4.0")
    assert stats["storage_version"] == "v1.4.0"
    with duckdb.connect(str(target), read_only=True) as connection:
        tags = connection.execute("select tags from duckdb_databases() where database_name = 'analytics'").fetchone()[0]
    assert tags["storage_version"].startswith("v1.4.0")


# ---------------------------------------------------------------------------------------------------------
# charts
# ---------------------------------------------------------------------------------------------------------


def make_growth_mart(path: Path, sizes: dict[str, int], days: int = 40) -> None:
    """marts.segment_growth_daily with the columns the charts read; segment i ends with sizes[i] members."""
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema if not exists marts")
        connection.execute("""
            create table marts.segment_growth_daily (
                account_id varchar, account_name varchar, segment_id varchar, segment_name varchar, date date,
                total_members bigint,
                members_added bigint, members_removed bigint, net_change_30d bigint, growth_rate_30d double,
                churn_rate_30d double, members_at_start_30d bigint, definition_changed boolean
            )
        """)
        first = dt.date(2024, 1, 1)
        rows = []
        for index, (name, final_size) in enumerate(sizes.items()):
            for day in range(days):
                total = final_size - (days - 1 - day) * 2
                complete = day >= 29
                rows.append(
                    (
                        "acct",
                        "default",
                        f"seg{index}",
                        name,
                        first + dt.timedelta(days=day),
                        total,
                        5,
                        3,
                        60 if complete else None,
                        0.05 if complete else None,
                        0.01 if complete else None,
                        1200 if complete else None,
                        day == 10,
                    )
                )
        if rows:
            connection.executemany(
                "insert into marts.segment_growth_daily values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )


def report_data(page: str) -> dict:
    """What the growth report embeds for its script, unpacked."""
    return read_page(page)


def test_charts_draw_the_largest_segments_and_the_report_has_every_segment(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    sizes = {"Small": 100, "Huge": 9000, "Medium": 2000, "Tiny": 50, "Big": 5000, "Cats & </script><Dogs>": 3000}
    make_growth_mart(database, sizes)
    before = database.stat().st_mtime_ns

    paths = write_growth_charts(database, tmp_path / "charts", top_n=3)

    charts = tmp_path / "charts"
    assert paths == {
        "png": charts / "segment_growth.png",
        "preview": charts / "segment_growth_preview.png",
        "html": charts / "segment_growth.html",
    }
    assert paths["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert paths["preview"].stat().st_size < 90_000  # shown inline in the Dagster UI as a data URI
    data = report_data(paths["html"].read_text())
    # every segment, largest first, each with its own dense daily arrays and the day its definition changed
    assert [s["name"] for s in data["segments"]] == sorted(sizes, key=sizes.get, reverse=True)
    huge = data["segments"][0]
    assert huge["latest"] == 9000 and len(huge["total"]) == 40 and huge["total"][-1] == 9000
    assert huge["added"][0] == 5 and huge["removed"][0] == 3 and huge["start"] == "2024-01-01"
    assert huge["changes"] == [[10, "The definition changed"]]
    assert huge["growth30"] == 0.05 and huge["net30"] == 60
    # the database was only read, and the connection is closed again (a read-write open in this
    # process would fail with "different configuration" otherwise)
    assert database.stat().st_mtime_ns == before
    duckdb.connect(str(database)).close()


def test_the_30_day_figures_are_the_latest_days_even_when_incomplete(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    make_growth_mart(database, {"A": 1000})
    # a later day after a gap: its 30-day window is incomplete, so its figures are NULL
    with duckdb.connect(str(database)) as connection:
        connection.execute("""
            insert into marts.segment_growth_daily
            values ('acct', 'default', 'seg0', 'A', date '2024-03-01', 1234, 5, 3, null, null, null, null, false)
        """)
    (segment,) = report_data(write_growth_charts(database, tmp_path / "charts")["html"].read_text())["segments"]
    assert segment["latest"] == 1234 and segment["net30"] is None and segment["growth30"] is None
    assert segment["total"][-1] == 1234 and segment["total"][-2] is None  # the gap stays a gap


def test_the_html_page_is_self_contained(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    make_growth_mart(database, {"A": 10, "B": 20})
    page = write_growth_charts(database, tmp_path / "charts")["html"].read_text()
    plotly = page_elements(page)["plotly-packed"]
    assert b"plotly.js" in unpack(plotly[1], int(plotly[0]["length"])).lower()  # the library itself is embedded
    assert not re.search(r"<script[^>]*\bsrc\b", page, re.IGNORECASE)
    assert not re.search(r"<link\b|@import|<iframe", page, re.IGNORECASE)


def test_charts_from_an_empty_mart_still_write_both_files(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    make_growth_mart(database, {})
    paths = write_growth_charts(database, tmp_path / "charts")
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    assert "no segment growth data yet" in paths["html"].read_text()


def test_charts_explain_a_missing_mart_or_file(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    duckdb.connect(str(database)).close()
    with pytest.raises(LookupError, match="build the dbt models"):
        write_growth_charts(database, tmp_path / "charts")
    with pytest.raises(FileNotFoundError):
        write_growth_charts(tmp_path / "missing.duckdb", tmp_path / "charts")


def test_charts_read_while_an_analyst_holds_the_copy(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    make_growth_mart(database, {"A": 10})
    analyst = HeldConnection(database, read_only=True)
    try:
        paths = write_growth_charts(database, tmp_path / "charts")
        analyst.finish()
    finally:
        analyst.kill()
    assert paths["png"].exists()
    assert oct(os.stat(paths["html"]).st_mode & 0o777) == oct(0o644)


def test_the_png_writes_whole_members_and_keeps_the_legend_off_the_lines(tmp_path: Path) -> None:
    from segment_pipeline import charts

    database = tmp_path / "analytics.duckdb"
    names = ["Everyone who ever opened an email in the last two years", "Huge", "Big", "Bigger", "Large"]
    make_growth_mart(database, dict(zip(names, (2_400_000, 1_800_000, 1_600_000, 1_500_000, 1_200_000), strict=True)))
    figure = charts._figure(*charts._read(database, 5))
    figure.canvas.draw()
    totals_axis, flows_axis = figure.axes
    for axis in (totals_axis, flows_axis):
        labels = [label.get_text() for label in axis.get_yticklabels() if label.get_text()]
        assert labels and all(re.fullmatch(r"[−-]?\d{1,3}(,\d{3})*", label) for label in labels), labels
        assert axis.yaxis.get_offset_text().get_text() == ""  # no "1e6" above the axis
    assert (
        "2,400,000" in [label.get_text() for label in totals_axis.get_yticklabels()]
        or max(int(label.get_text().replace(",", "")) for label in totals_axis.get_yticklabels() if label.get_text())
        >= 2_000_000
    )
    # the legend sits beside the plotting area: it covers none of the lines
    legend = totals_axis.get_legend().get_window_extent()
    assert not legend.overlaps(totals_axis.get_window_extent())
    assert legend.x1 <= figure.bbox.x1  # and it is inside the picture
    assert [t.get_text() for t in totals_axis.get_legend().get_texts()][0].endswith("…")


def test_the_report_step_runs_in_a_process_of_its_own_and_says_why_it_failed(make_simulator, tmp_path):
    import dagster as dg

    from .pipeline_helpers import API_KEY, CHART, FAST, definitions, keys

    sim = make_simulator(api_key=API_KEY, segment_count=2, speed=FAST)
    defs = definitions(sim, tmp_path)
    # no analyst copy yet: the report's process stops, and the step says why in its own words
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            defs.assets,
            selection=dg.AssetSelection.assets(*keys([CHART], defs)),
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )
        messages = [entry.message for entry in instance.all_logs(result.run_id)]
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.event_specific_data.error.to_string()
    assert "the growth report was not written: FileNotFoundError: " in message
    assert "does not exist: publish the analyst copy (or build the warehouse) first" in message
    # it was another process that reported it, through Dagster Pipes
    assert [m for m in messages if "[pipes] external process pipes closed with exception" in m]
