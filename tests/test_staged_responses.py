"""Staged report responses are state files: checked before they are loaded, and the newest fetch of a cell wins.

Every response here is fetched over real HTTP from the simulator and staged by the pipeline's own code (as a
run that was killed before its load leaves it); the series step then runs in process (`dg.materialize`), and
the warehouse is compared with the simulator's truth.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.klaviyo import DayWindow, SeriesRequest
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH
from segment_pipeline.sources.series import fetch_series_table
from segment_pipeline.sources.series_staging import MAX_ROWS, LabelError, SeriesStaging, StagedLabel, rows_sha256
from segment_pipeline.warehouse import Warehouse

from .pipeline_helpers import (
    API_KEY,
    FAST,
    SEGMENTS,
    SERIES,
    SERIES_STATS,
    materialize,
    query,
    range_tags,
    series_truth,
    settings,
    stored_series,
)


def stage(sim, work: Path, first, last, segment_ids=None, mutate=None) -> Path:
    """Fetch one response over HTTP and stage it with the pipeline's code, as a run does before its load."""
    deployment = settings(sim, work)
    storage = deployment.storage
    if mutate is not None:
        sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=mutate, times=1)
    with KlaviyoAccess(deployment, deployment.accounts["default"]).client() as client:
        account = client.get_account()
        ids = tuple(segment_ids or sorted(s.id for s in sim.account.segments))
        request = SeriesRequest(ids, DayWindow(first, last))
        today = sim.account.today()
        table = fetch_series_table(client, account, request, fetched_on=today).table
    return SeriesStaging(storage.series_staging_dir, account.id, storage.series_quarantine_dir).put(table, request)


def inflated(body):
    """A response as Klaviyo might have sent it before it revised its numbers."""
    for result in body["data"]["attributes"]["results"]:
        result["statistics"]["total_members"] = [v + 1000 for v in result["statistics"]["total_members"]]
    return body


def series_windows(sim) -> list[tuple[str, str]]:
    found = []
    for entry in sim.requests:
        if entry.path == SEGMENT_SERIES_PATH and entry.status == 200:
            timeframe = entry.json["data"]["attributes"]["timeframe"]
            found.append((timeframe["start"][:10], timeframe["end"][:10]))
    return found


def series_metadata(result) -> dict:
    return result.asset_materializations_for_node("klaviyo__default__segment_series_daily")[0].metadata


def run_series(sim, work, first, last, instance=None, **kwargs):
    return materialize([SERIES], sim, work, tags=range_tags(first, last), instance=instance, **kwargs)


def test_staged_files_that_cannot_be_loaded_are_set_aside_and_their_cells_fetched_again(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    other = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST, seed=11, account_id="OtherAcct7")
    materialize([SEGMENTS], sim, tmp_path)
    account_id = sim.account.account_id
    last = sim.account.today() - dt.timedelta(days=30)
    first = last - dt.timedelta(days=11)  # four windows of three days, each staged as one response
    windows = [(first + dt.timedelta(days=3 * i), first + dt.timedelta(days=3 * i + 2)) for i in range(4)]

    sound = stage(sim, tmp_path, *windows[0])
    truncated = stage(sim, tmp_path, *windows[1])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    tampered = stage(sim, tmp_path, *windows[2])
    table = pq.read_table(tampered)
    numbers = table["total_members"].to_pylist()
    numbers[0] += 5
    pq.write_table(table.set_column(3, "total_members", pa.array(numbers, pa.int64())), tampered)
    # a response of another Klaviyo account, copied into this account's folder by mistake
    foreign = stage(other, tmp_path / "other", *windows[3])
    misplaced = sound.parent / foreign.name
    shutil.move(foreign, misplaced)
    sim.reset_log()

    instance = dg.DagsterInstance.ephemeral()
    result = run_series(sim, tmp_path, first, last, instance=instance)

    # the sound file loaded; the cells of the three others were asked again, in the fewest requests
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)
    assert sorted(series_windows(sim)) == [(windows[1][0].isoformat(), windows[3][1].isoformat())]
    assert query(tmp_path / "warehouse.duckdb", "select distinct account_id from klaviyo.segment_series_daily") == [
        (account_id,)
    ]
    quarantine = tmp_path / "state" / "quarantine" / "series" / account_id
    assert sorted(p.name for p in quarantine.glob("*.parquet")) == sorted([truncated.name, tampered.name, foreign.name])
    assert list((tmp_path / "state" / "staging" / "series" / account_id).iterdir()) == []

    metadata = series_metadata(result)
    assert metadata["run_staged_responses_from_earlier_runs"].value == 1
    assert metadata["run_staged_responses_set_aside"].value == 3
    listed = {Path(entry["file"]).name: entry for entry in metadata["run_staged_responses_set_aside_files"].value}
    assert "is not a whole Parquet file" in listed[truncated.name]["problem"]
    assert "does not match its checksum" in listed[tampered.name]["problem"]
    assert f"belongs to Klaviyo account OtherAcct7, not {account_id}" in listed[foreign.name]["problem"]
    assert (
        f"move it into {tmp_path / 'state' / 'staging' / 'series' / 'OtherAcct7'}/"
        in listed[foreign.name]["what_to_do"]
    )
    assert "fetched again by the next run over those days" in listed[truncated.name]["what_to_do"]
    assert all(entry["moved_to"] == str(quarantine / name) for name, entry in listed.items())
    # each is named in the run's log, with what to do, and in a note beside it
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
    for path in (truncated, tampered, misplaced):
        assert any(str(path) in w and str(quarantine / path.name) in w for w in warnings), warnings
        assert "moved to" in (quarantine / f"{path.name}.why.txt").read_text()

    # nothing is left to block the account: the next run has nothing to load and nothing to ask
    sim.reset_log()
    result = run_series(sim, tmp_path, first, last)
    assert series_windows(sim) == [] and series_metadata(result)["run_staged_responses_set_aside"].value == 0


def test_the_newest_fetch_of_a_cell_wins_in_one_load_and_across_loads(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    last = sim.account.today() - dt.timedelta(days=30)
    first = last - dt.timedelta(days=4)

    # an older fetch with numbers Klaviyo has revised since, then the current one; both left staged
    older = stage(sim, tmp_path, first, last, mutate=inflated)
    backup = tmp_path / "backup" / older.name
    backup.parent.mkdir()
    shutil.copy(older, backup)
    newer = stage(sim, tmp_path, first, last)
    assert older.name < newer.name  # the older file comes first in the folder
    sim.reset_log()

    result = run_series(sim, tmp_path, first, last)
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)
    assert series_windows(sim) == []  # both were kept; nothing was asked again
    assert series_metadata(result)["run_staged_rows_superseded"].value == 0  # one load: dlt kept the newest

    # the older response restored into the staging folder (from a backup) never overwrites the newer rows
    shutil.copy(backup, older)
    result = run_series(sim, tmp_path, first, last)
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)
    assert series_metadata(result)["run_staged_rows_superseded"].value == 3 * 5
    assert series_metadata(result)["run_staged_responses_from_earlier_runs"].value == 1
    assert not older.exists() and series_windows(sim) == []
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        moments = con.execute("select distinct fetched_at from klaviyo.segment_series_daily").fetchall()
    assert len(moments) == 1 and moments[0][0] is not None


def test_a_warehouse_and_a_staged_file_of_the_previous_version_load_without_a_full_refresh(make_simulator, tmp_path):
    """The version before staged labels: the series table had no fetched_at, and files carried no label."""
    import dlt

    from segment_pipeline.sources.segments import FROZEN_TYPES
    from segment_pipeline.sources.series import SERIES_COLUMNS
    from segment_pipeline.tables import SEGMENT_SERIES_TABLE

    sim = make_simulator(api_key=API_KEY, segment_count=2, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    last = sim.account.today() - dt.timedelta(days=30)
    first = last - dt.timedelta(days=5)
    middle = first + dt.timedelta(days=2)
    account_id = sim.account.account_id
    old_columns = {k: v for k, v in SERIES_COLUMNS.items() if k != "fetched_at"}

    # the old load of the first three days: Arrow rows with the old columns, through the same dlt pipeline
    loaded_on = sim.account.today() - dt.timedelta(days=1)
    cells = series_truth(sim, first, middle)
    old_rows = pa.table(
        {
            "account_id": [account_id] * len(cells),
            "segment_id": [sid for sid, _ in cells],
            "date": pa.array([day for _, day in cells], pa.date32()),
            **{name: [stats[i] for stats in cells.values()] for i, name in enumerate(SERIES_STATS)},
            "fetched_on": pa.array([loaded_on] * len(cells), pa.date32()),
            "_loaded_at": pa.array([dt.datetime.now(dt.UTC)] * len(cells), pa.timestamp("us", tz="UTC")),
        }
    )

    @dlt.source(name="klaviyo_series", max_table_nesting=0, schema_contract=FROZEN_TYPES)
    def old_source():
        yield dlt.resource(
            [old_rows],
            name=SEGMENT_SERIES_TABLE,
            primary_key=["account_id", "segment_id", "date"],
            write_disposition="merge",
            columns=old_columns,
        )

    Warehouse(settings(sim, tmp_path).storage).pipeline("klaviyo_series").run(old_source())

    # an old, unlabelled file of the last three days, named as the old version named them
    staged = stage(sim, tmp_path, middle + dt.timedelta(days=1), last)
    table = pq.read_table(staged).drop_columns(["fetched_at"]).replace_schema_metadata(None)
    pq.write_table(table, staged)
    sim.reset_log()

    result = run_series(sim, tmp_path, first, last)
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)
    assert series_windows(sim) == []  # the old rows are final, the old file was loaded
    assert series_metadata(result)["run_staged_responses_from_earlier_runs"].value == 1
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        stamped = dict(
            con.execute(
                "select date > ?, count(fetched_at) from klaviyo.segment_series_daily group by all", [middle]
            ).fetchall()
        )
    assert stamped == {False: 0, True: 2 * 3}  # old rows keep NULL; the old file's rows got its fetch moment


# ------------------------------------------------------------------------- the label, value by value

LABEL = {
    "format": 1,
    "account_id": "AbC123",
    "window": ["2026-01-01", "2026-03-01"],
    "segment_ids": ["S1", "S2"],
    "fetched_on": "2026-03-05",
    "fetched_at": "2026-03-05T10:00:00.123456+00:00",
    "rows": 120,
    "sha256": "0" * 64,
}


def test_a_label_reads_back_as_written():
    label = StagedLabel.from_json(json.dumps(LABEL).encode())
    assert StagedLabel.from_json(label.to_json()) == label
    assert label.window == DayWindow(dt.date(2026, 1, 1), dt.date(2026, 3, 1))


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"format": 2}, "not of format 1"),
        ({"account_id": "../other"}, "account id is not an account id"),
        ({"window": ["2026-01-01", "2026-03-02"]}, "not one request's window"),
        ({"window": ["2026-02-01", "2026-01-31"]}, "not one request's window"),
        ({"window": ["2026-01-01"]}, "damaged"),
        ({"segment_ids": [f"S{i}" for i in range(101)]}, "segment ids"),
        ({"segment_ids": []}, "segment ids"),
        ({"segment_ids": ["S 1"]}, "segment ids"),
        ({"fetched_on": "yesterday"}, "damaged"),
        ({"fetched_at": "2026-03-05T10:00:00"}, "no timezone"),
        ({"rows": 0}, "row count"),
        ({"rows": MAX_ROWS + 1}, "row count"),
        ({"rows": True}, "row count"),
        ({"sha256": "xyz"}, "checksum"),
    ],
)
def test_a_label_with_a_value_out_of_bounds_is_refused(change, problem):
    with pytest.raises(LabelError, match=problem):
        StagedLabel.from_json(json.dumps({**LABEL, **change}).encode())
    with pytest.raises(LabelError, match="not JSON"):
        StagedLabel.from_json(b"{")


def test_the_checksum_is_of_the_values_not_of_how_they_are_chunked():
    table = pa.table({"segment_id": ["a", "b", "c"], "total_members": pa.array([1, None, 3], pa.int64())})
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    assert rows_sha256(rechunked) == rows_sha256(table)
    assert rows_sha256(table.set_column(1, "total_members", pa.array([1, 0, 3], pa.int64()))) != rows_sha256(table)
    assert rows_sha256(table.set_column(0, "segment_id", pa.array(["a", "bc", ""]))) != rows_sha256(table)
    assert rows_sha256(table.set_column(0, "segment_id", pa.array(["a", None, "c"]))) != rows_sha256(
        table.set_column(0, "segment_id", pa.array(["a", "", "c"]))
    )
