"""A full disk, a read-only state folder and state files that cannot be read each stop the series step with a
message saying what to do, before any report request is paid for where that is possible, and a paid response
that could not be kept is said so.

The disks are real: the state folder is a small tmpfs mounted for the test (which needs root, as CI has), so
the errors are the kernel's own `ENOSPC` and `EROFS`, met by every writer (the staging folder, the report
ledger, the locks, dlt's working folder).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from segment_pipeline.klaviyo.ledger import MAX_LEDGER_BYTES
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .pipeline_helpers import API_KEY, FAST, SEGMENTS, SERIES, materialize, range_tags, series_truth, stored_series


@pytest.fixture
def mount():
    """`mount(folder, size)`: a tmpfs of `size` at `folder` for the test (unmounted after it)."""
    mounted: list[Path] = []

    def mount_tmpfs(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"a tmpfs cannot be mounted here (needs root): {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount_tmpfs
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the disk of `folder` to the last byte, then give `leave` bytes back; returns the filler file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def failure_message(result) -> str:
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message


def run_series(sim, work, first, last):
    return materialize([SERIES], sim, work, tags=range_tags(first, last), raise_on_error=False)


def test_a_full_disk_is_found_before_the_first_report_request(make_simulator, tmp_path, mount):
    state = mount(tmp_path / "state", "8m")
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    filler = fill(state, leave=64 * 1024)
    last = sim.account.today() - dt.timedelta(days=30)
    first = last - dt.timedelta(days=9)
    sim.reset_log()

    result = run_series(sim, tmp_path, first, last)
    assert not result.success
    message = failure_message(result)
    assert f"the staging folder {state / 'staging' / 'series' / sim.account.account_id} has" in message
    assert "free, less than the 1.0 MB this run's responses (30 cells) and their load need" in message
    assert message.rstrip().endswith("and run again. No report request was sent.")
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0

    filler.unlink()
    assert run_series(sim, tmp_path, first, last).success
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)


def test_a_response_that_arrives_as_the_disk_fills_up_is_said_lost_and_asked_again(make_simulator, tmp_path, mount):
    state = mount(tmp_path / "state", "8m")
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    last = sim.account.today() - dt.timedelta(days=30)
    first = last - dt.timedelta(days=69)  # two windows: 60 days, then 10
    fillers = []

    # something else on the machine fills the disk while Klaviyo prepares the first answer
    def fill_the_disk(body):
        fillers.append(fill(state))
        return body

    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=fill_the_disk, times=1)
    sim.reset_log()
    result = run_series(sim, tmp_path, first, last)
    assert not result.success
    message = failure_message(result)
    window = f"days {first}..{first + dt.timedelta(days=59)} of 3 segment(s)"
    assert f"the report response for {window}" in message
    assert "(180 rows) was received but could not be kept" in message
    assert f"(No space left on device): the disk holding {state / 'staging' / 'series'}" in message
    assert f"counted in the report ledger of account {sim.account.account_id}" in message
    assert "the next run asks for those cells again" in message
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1  # nothing more was paid for once it could not be kept
    ledger = json.loads((state / "report_ledgers" / f"{sim.account.account_id}.json").read_text())
    assert len(ledger["sent"]) == 1

    fillers[0].unlink()
    assert run_series(sim, tmp_path, first, last).success
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 3


def test_a_read_only_state_folder_is_refused_before_anything_is_sent(make_simulator, tmp_path, mount):
    state = mount(tmp_path / "state", "8m")
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    last = sim.account.today() - dt.timedelta(days=30)

    # only the staging folder is read-only: found before the first report request
    staging = mount(state / "staging" / "series" / sim.account.account_id, "1m")
    remount_read_only(staging)
    sim.reset_log()
    result = run_series(sim, tmp_path, last, last)
    message = failure_message(result)
    assert f"the staging folder {staging} cannot be written (Read-only file system)" in message
    assert f"{staging} is on a read-only file system: mount it writable. No report request was sent." in message
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0

    # the whole state folder: refused before Klaviyo is asked anything at all
    remount_read_only(state)
    sim.reset_log()
    result = run_series(sim, tmp_path, last, last)
    message = failure_message(result)
    assert f"the lock file {state / 'locks' / 'fetch_default.lock'} cannot be opened (Read-only file system)" in message
    assert "mount it writable. Nothing was sent or written." in message
    assert sim.requests == []


def test_every_state_file_that_cannot_be_read_stops_the_run_before_a_report_request(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=2, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    last = sim.account.today() - dt.timedelta(days=30)
    assert run_series(sim, tmp_path, last, last).success  # every state file exists now
    state = tmp_path / "state"
    # the single ledger file of older versions: its counts are adopted by the first run that finds it
    legacy = state / "klaviyo_report_budget.json"

    def as_directory(path: Path):
        saved = path.with_name(path.name + ".saved")
        path.rename(saved)
        path.mkdir()
        return lambda: (path.rmdir(), saved.rename(path))

    def written(path: Path, text: str):
        path.write_text(text)
        return lambda: path.unlink()

    def oversized(path: Path):
        with path.open("wb") as sparse:  # no disk needed: the size alone must refuse it
            sparse.truncate(MAX_LEDGER_BYTES + 1)
        return lambda: path.unlink()

    def truncated(path: Path):
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
        return lambda: path.write_bytes(whole)

    cases = [
        (
            lambda: written(legacy, '{"sent": [1, 2'),
            f"the report ledger of an older version, {legacy}, is damaged or not shaped like a ledger",
        ),
        (
            lambda: (legacy.mkdir(), lambda: legacy.rmdir())[1],
            f"the report ledger of an older version, {legacy}, cannot be read ([Errno {errno.EISDIR}] Is a directory",
        ),
        (
            lambda: oversized(legacy),
            f"the report ledger of an older version, {legacy}, is larger than {MAX_LEDGER_BYTES // 2**20} MB",
        ),
        (
            lambda: as_directory(state / "report_ledgers" / f"{sim.account.account_id}.json"),
            "cannot be read ([Errno 21] Is a directory",
        ),
        (
            lambda: as_directory(state / "locks" / "fetch_default.lock"),
            f"the lock file {state / 'locks' / 'fetch_default.lock'} cannot be opened (Is a directory)",
        ),
        (
            lambda: truncated(state / "dlt" / "klaviyo_series" / "state.json"),
            f"dlt's working folder of the klaviyo_series load, {state / 'dlt' / 'klaviyo_series'}, cannot be read",
        ),
    ]
    first = last - dt.timedelta(days=5)
    for damage, expected in cases:
        repair = damage()
        sim.reset_log()
        result = run_series(sim, tmp_path, first, last)
        assert not result.success
        assert expected in failure_message(result), failure_message(result)
        assert sim.count(path=SEGMENT_SERIES_PATH) == 0, expected
        repair()

    # repaired, the run goes through
    assert run_series(sim, tmp_path, first, last).success
    assert stored_series(tmp_path / "warehouse.duckdb") == series_truth(sim, first, last)
    shutil.rmtree(state / "dlt" / "klaviyo_series")  # what the message says to do: dlt restores it
    assert run_series(sim, tmp_path, first, last).success
