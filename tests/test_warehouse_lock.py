"""The warehouse lock: a kernel lock that dies with its holder, says who holds it, and waits for DuckDB too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import duckdb
import pytest

from segment_pipeline.settings import load_settings
from segment_pipeline.warehouse import (
    Warehouse,
    WarehouseLockedError,
    lock_holder_description,
    read_connection,
    warehouse_lock,
)

HOLDER = """
import sys, time
from pathlib import Path
from segment_pipeline.warehouse import warehouse_lock
with warehouse_lock(Path(sys.argv[1]), run_id="run-of-the-holder", step="a_step"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(path):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_waiting_step_names_the_holder_and_gets_the_lock_once_the_holder_is_killed(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    holder = hold(warehouse)
    try:
        assert f"PID {holder.pid}" in lock_holder_description(warehouse)
        messages: list[str] = []
        acquired = threading.Event()

        def waiter():
            with warehouse_lock(warehouse, run_id="waiting-run", log=messages.append, timeout=60):
                acquired.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + 20
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not acquired.is_set()
        assert f"PID {holder.pid}" in messages[0] and "run-of-the-holder" in messages[0], messages
        # kill -9: no cleanup code runs, the kernel frees the lock
        os.kill(holder.pid, signal.SIGKILL)
        thread.join(timeout=20)
        assert acquired.is_set()
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder_description(warehouse) is None


def test_a_lock_held_too_long_fails_saying_by_whom_and_which_setting_waits_longer(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    holder = hold(warehouse)
    # the step's wait is the setting's: the warehouse of a deployment with WAREHOUSE_LOCK_TIMEOUT_SECONDS=0.5
    settings = load_settings({"WAREHOUSE_PATH": str(warehouse), "WAREHOUSE_LOCK_TIMEOUT_SECONDS": "0.5"})
    try:
        with pytest.raises(WarehouseLockedError) as caught, Warehouse(settings.storage).lock():
            pass
    finally:
        holder.kill()
        holder.wait()
    message = str(caught.value)
    assert f"PID {holder.pid}" in message and "WAREHOUSE_LOCK_TIMEOUT_SECONDS" in message


DUCKDB_HOLDER = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1], read_only=sys.argv[3] == "read_only")
print("open", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def hold_duckdb(path, seconds: float, mode: str) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", DUCKDB_HOLDER, str(path), str(seconds), mode], stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"open"
    return holder


# a dbt child of a killed run holds the file read-write; an analyst's session often read-only, which DuckDB
# lets other readers share but no writer: both must be waited for, as the step then writes
@pytest.mark.parametrize("mode", ["read_write", "read_only"])
def test_after_the_lock_it_waits_for_duckdb_to_let_go_of_the_file(tmp_path, mode):
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    # it holds DuckDB's own lock for a moment more, then lets go
    straggler = hold_duckdb(warehouse, 1.5, mode)
    messages: list[str] = []
    with warehouse_lock(warehouse, log=messages.append, duckdb_wait=30):
        # the step's own write, as dlt's load or dbt does it
        with duckdb.connect(str(warehouse)) as connection:
            connection.execute("create or replace table written as select 1 as one")
    assert straggler.wait(timeout=10) == 0
    assert any("still open in" in m and f"PID {straggler.pid}" in m for m in messages), messages

    # anyone holding it for longer (an analyst's session) gets a plain error after the wait
    holder = hold_duckdb(warehouse, 60, mode)
    try:
        with (
            pytest.raises(WarehouseLockedError, match="DuckDB's own lock") as caught,
            warehouse_lock(warehouse, duckdb_wait=0.5),
        ):
            pass
        message = str(caught.value)
        assert f"PID {holder.pid}" in message and "WAREHOUSE_DUCKDB_WAIT_SECONDS" in message
        assert "ANALYTICS_PATH" in message and "nothing was written" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_read_refused_by_a_writer_says_only_that_it_could_not_read(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    holder = hold_duckdb(warehouse, 60, "read_write")
    try:
        with pytest.raises(WarehouseLockedError) as caught, read_connection(warehouse):
            pass
    finally:
        holder.kill()
        holder.wait()
    # a read cannot know what its step wrote before: no claim that nothing was
    message = str(caught.value)
    assert f"PID {holder.pid}" in message and "could not be read" in message and "nothing" not in message
