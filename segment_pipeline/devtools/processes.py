"""The processes the demo and `dev` start: the bundled Klaviyo simulator, and Dagster (webserver and daemon).

Each runs as the separate server it is, in its own process group, and is stopped with everything it started.
The simulator is started through its own command line (`python -m klaviyo_simulator serve`): the pipeline
never imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..dagster_api import DagsterApi
from ..settings import child_environment

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "workspace.yaml"
# the project's Dagster instance settings, kept in the repository beside the packages
INSTANCE_SETTINGS = REPO / "dagster_home" / "dagster.yaml"


@dataclass(frozen=True)
class ServedAccount:
    """One simulated account, as the simulator announced it."""

    name: str
    account_id: str
    timezone: str
    segments: int
    api_key: str


@dataclass(frozen=True)
class Simulator:
    """A running simulator: its address and its accounts."""

    base_url: str
    accounts: tuple[ServedAccount, ...]
    log_path: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def simulator(
    work_dir: Path,
    *,
    api_key: str,
    accounts: int = 1,
    segments: int = 150,
    seed: int = 42,
    speed: float = 60.0,
    timezone: str | None = None,
    port: int = 0,
    extra: tuple[str, ...] = (),
) -> Iterator[Simulator]:
    """Start `python -m klaviyo_simulator serve` and wait until it says where it listens."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ready = work_dir / "simulator.json"
    ready.unlink(missing_ok=True)
    log_path = work_dir / "simulator.log"
    command = [
        sys.executable,
        "-m",
        "klaviyo_simulator",
        "serve",
        f"--port={port}",
        f"--segments={segments}",
        f"--seed={seed}",
        f"--speed={speed:g}",
        f"--accounts={accounts}",
        f"--ready-file={ready}",
        *([f"--timezone={timezone}"] if timezone else []),
        *extra,
    ]
    env = child_environment(KLAVIYO_API_KEY=api_key)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the simulator stopped at start: {log_path.read_text(encoding='utf-8')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start within a minute; its output is in {log_path}")
            time.sleep(0.1)
        announced = json.loads(ready.read_text(encoding="utf-8"))
        yield Simulator(
            base_url=announced["base_url"],
            accounts=tuple(ServedAccount(**account) for account in announced["accounts"]),
            log_path=log_path,
        )
    finally:
        _stop(process)
        ready.unlink(missing_ok=True)


def prepare_dagster_home(home: Path, settings: Path = INSTANCE_SETTINGS) -> Path:
    """A Dagster instance directory with the project's instance settings (dagster_home/dagster.yaml)."""
    home.mkdir(parents=True, exist_ok=True)
    if settings.is_file():
        (home / "dagster.yaml").write_bytes(settings.read_bytes())
    return home


@contextlib.contextmanager
def dagster(env: Mapping[str, str], log_path: Path, port: int | None = None) -> Iterator[DagsterApi]:
    """`dagster dev` (the webserver and the daemon) on this project's workspace, until the block ends."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(WORKSPACE),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, env=dict(env), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    api = DagsterApi(f"http://127.0.0.1:{port}")
    try:
        api.wait_until_loaded(timeout=180)
        yield api
    finally:
        api.close()
        _stop(process, timeout=60)
