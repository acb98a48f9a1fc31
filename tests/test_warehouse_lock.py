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
from segment_pipeline.warehouse import Warehouse, WarehouseLockedError, lock_holder_description, warehouse_lock

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
connection = duckdb.connect(sys.argv[1])
print("open", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def test_after_the_lock_it_waits_for_duckdb_to_let_go_of_the_file(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    # like a dbt child of a killed run: it holds DuckDB's own lock for a moment more, then exits
    straggler = subprocess.Popen([sys.executable, "-c", DUCKDB_HOLDER, str(warehouse), "1.5"], stdout=subprocess.PIPE)
    assert straggler.stdout.readline().strip() == b"open"
    messages: list[str] = []
    with warehouse_lock(warehouse, log=messages.append, duckdb_wait=30):
        duckdb.connect(str(warehouse)).close()
    assert straggler.wait(timeout=10) == 0
    assert any("still open" in m for m in messages), messages

    # anyone holding it for longer (an analyst's session) gets a plain error after the wait
    holder = subprocess.Popen([sys.executable, "-c", DUCKDB_HOLDER, str(warehouse), "60"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"open"
        with (
            pytest.raises(WarehouseLockedError, match="DuckDB's own lock") as caught,
            warehouse_lock(warehouse, duckdb_wait=0.5),
        ):
            pass
        assert "ANALYTICS_PATH" in str(caught.value) and "nothing was written" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
