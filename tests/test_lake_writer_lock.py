"""The lake's writer lock (an advisory lock in its PostgreSQL catalog): whoever waits says for whom, a wait that
runs out says so and writes nothing, a killed holder frees it at once, and a catalog that is down says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from segment_pipeline.config import StorageSettings
from segment_pipeline.devtools.postgres import LocalPostgres
from segment_pipeline.lake import Lake, LakeUnavailableError
from segment_pipeline.lake.writer_lock import holder_name, lake_writer_lock, lock_key
from segment_pipeline.warehouse import Holder, Warehouse, WarehouseLockedError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)

# holds the lock until its stdin closes or it is killed; says when it has it
HOLDER = """
import sys
from pathlib import Path
from segment_pipeline.lake import Lake
from segment_pipeline.lake.writer_lock import lake_writer_lock
lake = Lake.from_url(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
with lake_writer_lock(lake, run_id="0123456789abcdef", step="segment_series_daily", timeout=30):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def lake(postgres, extension_dir, tmp_path, monkeypatch) -> Lake:
    catalog, password = postgres.new_database("writer_lock")
    monkeypatch.setenv("PGPASSWORD", password)
    return Lake(catalog=catalog, data_path=tmp_path / "data", extension_dir=extension_dir)


def hold_in_another_process(lake: Lake) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, lake.catalog.url(), str(lake.data_path), str(lake.extension_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_waiting_step_names_the_holder_and_gets_the_lake_when_it_is_done(lake):
    holder = hold_in_another_process(lake)
    messages: list[str] = []
    # the holder lets go after a second
    release = threading.Timer(1.0, holder.stdin.close)
    started = time.monotonic()
    release.start()
    try:
        with lake_writer_lock(lake, step="dbt", log=messages.append, timeout=30):
            waited = time.monotonic() - started
    finally:
        release.join()
        holder.wait(timeout=10)
    assert waited >= 0.9
    named = holder_name("0123456789abcdef", "segment_series_daily", pid=holder.pid)
    assert " run 01234567 step segment_series_d" in named
    assert messages[0].startswith(f"waiting for the lake's writer lock, held by {named} (waited "), messages
    assert messages[-1].startswith("got the lake's writer lock after waiting"), messages


def test_a_wait_that_runs_out_says_who_holds_the_lake(lake):
    holder = hold_in_another_process(lake)
    try:
        with pytest.raises(WarehouseLockedError, match="being written by another pipeline step") as refused:
            with lake_writer_lock(lake, timeout=0.5, locked_error=WarehouseLockedError):
                raise AssertionError("the lock was taken while another process held it")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    message = str(refused.value)
    assert holder_name("0123456789abcdef", "segment_series_daily", pid=holder.pid) in message
    assert "WAREHOUSE_LOCK_TIMEOUT_SECONDS" in message
    assert os.environ["PGPASSWORD"] not in message


def test_a_killed_holder_frees_the_lake_at_once(lake):
    holder = hold_in_another_process(lake)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    started = time.monotonic()
    with lake_writer_lock(lake, timeout=10):
        assert time.monotonic() - started < 5


def test_one_thread_may_enter_again_and_other_lakes_are_not_held(lake, postgres, extension_dir, tmp_path):
    with lake_writer_lock(lake, timeout=5) as first:
        with lake_writer_lock(lake, timeout=0.5) as again:
            assert (first, again) == (True, False)
        # another lake in the same database (its own metadata schema) has a lock of its own
        other = Lake(
            catalog=lake.catalog, data_path=tmp_path / "other", extension_dir=extension_dir, metadata_schema="other"
        )
        assert lock_key(other) != lock_key(lake)
        with lake_writer_lock(other, timeout=0.5) as other_lake:
            assert other_lake is True
    # let go: another process takes it at once
    hold_in_another_process(lake).stdin.close()


def test_the_warehouse_takes_the_lake_lock_for_each_step(lake, tmp_path):
    storage = StorageSettings.resolved(
        warehouse_path=lake.catalog.url(),
        warehouse_data_path=str(lake.data_path),
        extension_dir=lake.extension_dir,
        state_dir=tmp_path / "state",
        lock_timeout_seconds=0.5,
    )
    warehouse = Warehouse(storage)
    holder = hold_in_another_process(lake)
    try:
        with pytest.raises(WarehouseLockedError, match="run 01234567 step segment_series_d"):
            with warehouse.lock(Holder(run_id="r", step="segments")):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with warehouse.lock(Holder(run_id="r", step="segments")):
        pass


def test_a_catalog_that_is_down_is_said_plainly(server_dir, extension_dir, tmp_path, monkeypatch):
    cluster = LocalPostgres(server_dir, log=lambda _: None)
    server = cluster.start()
    cluster.ensure_database(server, "lake", "pipeline", "right-password")
    lake = Lake.from_url("ducklake:postgres:" + server.dsn("lake", "pipeline"), tmp_path / "data", extension_dir)
    monkeypatch.setenv("PGPASSWORD", "wrong-password")
    with pytest.raises(LakeUnavailableError, match="refused the login of user 'pipeline'"):
        with lake_writer_lock(lake, timeout=1):
            pass
    cluster.stop()
    monkeypatch.setenv("PGPASSWORD", "right-password")
    with pytest.raises(LakeUnavailableError, match="cannot reach the lake's PostgreSQL catalog"):
        with lake_writer_lock(lake, timeout=1):
            pass
