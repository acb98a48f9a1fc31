"""Real Dagster processes for tests: the CLI (`dagster job execute`, `dagster asset materialize`) and the daemon.

Each process gets its own session (process group) so a test can kill exactly it, and its output is read
line by line in a thread so a test can act at a point the log names (e.g. "Running dbt command").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from . import pipeline_helpers

REPO = Path(__file__).resolve().parents[1]
JOB = "ingest_default_job"


def pipeline_env(sim, work: Path, **extra: str) -> dict[str, str]:
    """The environment of a deployment against the simulator, everything under `work`, with its Dagster instance."""
    home = work / "dagster_home"
    if not home.exists():
        home.mkdir(parents=True)
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        # create the instance's storage once, so processes started together do not race to create it
        with dg.DagsterInstance.from_config(str(home)):
            pass
    return {**pipeline_helpers.pipeline_env(sim, work), "DAGSTER_HOME": str(home), **extra}


def range_tags_json(first, last) -> str:
    return json.dumps(
        {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }
    )


class DagsterProcess:
    """A Dagster command in its own session; its output lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_until(self, condition: Callable[[], bool], timeout: float = 180, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"the process ended before {what}:\n{self.output[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output[-4000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the Dagster process itself, as the OOM killer would (a dbt child may live on a moment)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def kill_group(self) -> None:
        """SIGKILL the whole session: the process and everything it started."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code


def job_execute(env: dict[str, str], first, last, job: str = JOB) -> DagsterProcess:
    """`dagster job execute` of a daily job (default the single account's) for a range of days, as the README shows."""
    return DagsterProcess(
        [
            "dagster",
            "job",
            "execute",
            "-m",
            "segment_pipeline.definitions",
            "-j",
            job,
            "--tags",
            range_tags_json(first, last),
        ],
        env,
    )


# the shared build up to the analyst copy (the chart only reads the copy): what follows the accounts' loads
SHARED_TO_COPY = 'kind:dbt or key:"analytics/warehouse_copy"'


def asset_materialize(env: dict[str, str], select: str, first=None, last=None) -> DagsterProcess:
    """`dagster asset materialize` of a selection, for a range of days when given (one run, as a backfill)."""
    days = ["--partition-range", f"{first.isoformat()}...{last.isoformat()}"] if first is not None else []
    return DagsterProcess(
        ["dagster", "asset", "materialize", "-m", "segment_pipeline.definitions", "--select", select, *days], env
    )
