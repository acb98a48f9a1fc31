"""The demo's second platform: a simulated Segments API workspace beside the simulated Klaviyo accounts.

The platform keeps no past counts, so its history can only be collected forward, one snapshot a day. The demo
starts the bundled Segments API simulator (`python -m segments_api_simulator`, its own process; the pipeline
never imports it) with its clock SNAPSHOT_DAYS days back, and takes one snapshot per simulated day through the
same service the workspace's asset runs, moving the simulator's clock a day between them; half-way it edits one
segment's filters, so the definition history has a change to show. The backfill's dbt build then puts both
platforms in the marts and the report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import yaml

from ..settings import Settings, child_environment
from ..tables import (
    MARTS_SCHEMA,
    SEGMENTS_API_DATASET,
    SEGMENTS_API_DEFINITIONS_TABLE,
    SEGMENTS_API_SEGMENTS_TABLE,
    SEGMENTS_API_SNAPSHOTS_TABLE,
    SEGMENTS_API_WORKSPACES_TABLE,
)
from . import processes

WORKSPACE = "newsletter"
TIMEZONE = "Europe/Berlin"
# the simulator's key of a workspace is `<prefix>-<name>` (its command line); a simulator's key, not a secret
KEY_PREFIX = "demo-segments-key"
# days of daily snapshots the demo collects (at most its --days)
SNAPSHOT_DAYS = 14
KEY_VARIABLE = "SEGMENTS_API_KEY_NEWSLETTER"
RAW_TABLES = (
    SEGMENTS_API_WORKSPACES_TABLE,
    SEGMENTS_API_SEGMENTS_TABLE,
    SEGMENTS_API_DEFINITIONS_TABLE,
    SEGMENTS_API_SNAPSHOTS_TABLE,
)
_ANNOUNCEMENT = re.compile(r"Segments API simulator on (?P<url>http://\S+):")
# the simulator's filter edit, as the platform's dashboard would make it
EDITED_FILTERS = [
    {"field": "opens_count", "operator": "gte", "value": 5},
    {"field": "last_open_at", "operator": "within_days", "value": 30},
]


@dataclass(frozen=True)
class ServedWorkspace:
    base_url: str
    api_key: str
    log_path: Path


@contextlib.contextmanager
def simulator(data_dir: Path, segments: int, days: int, seed: int) -> Iterator[ServedWorkspace]:
    """The Segments API simulator with one workspace of `segments` segments, its clock `days` days back."""
    log_path = data_dir / "segments_api_simulator.log"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days)
    command = [
        sys.executable,
        "-m",
        "segments_api_simulator",
        "--port=0",
        f"--seed={seed}",
        f"--start={start.isoformat()}",
        f"--key-prefix={KEY_PREFIX}",
        f"--workspace={WORKSPACE}={segments}",
    ]
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, env=child_environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := _ANNOUNCEMENT.search(log_path.read_text(encoding="utf-8"))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Segments API simulator did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield ServedWorkspace(found["url"], f"{KEY_PREFIX}-{WORKSPACE}", log_path)
    finally:
        processes._stop(process)


def add_to_environment(env: MutableMapping[str, str], served: ServedWorkspace, accounts_file: Path | None) -> None:
    """Turn the platform on for the served workspace: SEGMENTS_API_KEY (the workspace `default`) beside the
    single-account variables, or an entry of the accounts file when the demo wrote one."""
    env["SEGMENTS_API_BASE_URL"] = served.base_url
    if accounts_file is None:
        env.update(SEGMENTS_API_KEY=served.api_key, SEGMENTS_API_TIMEZONE=TIMEZONE)
        return
    document = yaml.safe_load(accounts_file.read_text(encoding="utf-8"))
    entry = {"name": WORKSPACE, "platform": "segments_api", "api_key_env": KEY_VARIABLE, "timezone": TIMEZONE}
    document["accounts"].append(entry)
    header = "".join(line + "\n" for line in accounts_file.read_text(encoding="utf-8").splitlines() if line[:1] == "#")
    accounts_file.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    env[KEY_VARIABLE] = served.api_key


def snapshot_history(settings: Settings, served: ServedWorkspace, days: int) -> None:
    """One snapshot per simulated day for `days` days up to now, with one filter edit half-way."""
    from ..segments_api.access import SegmentsApiWorkspace
    from ..segments_api.snapshot import take_snapshot
    from ..warehouse import Holder, Warehouse

    (workspace,) = settings.segments_api_workspaces
    access, warehouse = SegmentsApiWorkspace(settings, workspace), Warehouse(settings.storage)
    log = logging.getLogger("segment_pipeline.demo")
    _forget_earlier_demos(settings)
    edited = None
    for day in range(days + 1):
        if day:
            httpx.post(f"{served.base_url}/_admin/clock", json={"advance_hours": 24}, timeout=10).raise_for_status()
        if day == days // 2:
            edited = _edit_a_segment(served)
        take_snapshot(access, warehouse, Holder(step="demo snapshot"), log)
    print(
        f"  {workspace.name:<24} Segments API workspace ({TIMEZONE}): {days + 1} daily snapshots, the filters of "
        f"{edited!r} edited half-way (its history starts at the first snapshot: the platform keeps none)"
    )


def _forget_earlier_demos(settings: Settings) -> None:
    """A fresh simulator is a new history (its clock starts again): empty what an earlier demo snapshotted in
    this demo's own warehouse (the tables stay, as dlt made them)."""
    path = settings.storage.warehouse_path
    if not path.exists():
        return
    with duckdb.connect(str(path)) as connection:
        stored = {
            name
            for (name,) in connection.execute(
                "select table_name from information_schema.tables where table_schema = ?", [SEGMENTS_API_DATASET]
            ).fetchall()
        }
        for table in RAW_TABLES:
            if table in stored:
                connection.execute(f"delete from {SEGMENTS_API_DATASET}.{table}")


def _edit_a_segment(served: ServedWorkspace) -> str:
    truth = httpx.get(f"{served.base_url}/_admin/truth", params={"workspace": WORKSPACE}, timeout=10).json()
    segment_id, segment = sorted(truth["segments"].items())[0]
    answer = httpx.post(
        f"{served.base_url}/_admin/workspaces/{WORKSPACE}/segments/{segment_id}",
        json={"filters": EDITED_FILTERS},
        timeout=10,
    )
    answer.raise_for_status()
    return segment["name"]


def summary_lines(connection) -> list[str]:
    """What the analyst copy holds of each platform."""
    per_platform = connection.execute(
        f"select platform, count(distinct (account_id, segment_id)), count(*), min(date), max(date) "
        f"from {MARTS_SCHEMA}.segment_growth_daily group by 1 order by 1"
    ).fetchall()
    snapshots = connection.execute(
        f"select count(*) from {SEGMENTS_API_DATASET}.{SEGMENTS_API_SNAPSHOTS_TABLE}"
    ).fetchone()[0]
    lines = [
        f"  marts, {platform + ':':<14}  {segments} segments, {rows} daily rows ({first} to {last})"
        for platform, segments, rows, first, last in per_platform
    ]
    return [*lines, f"  Segments API snapshots: {snapshots} counts kept (one per segment and day it was recounted)"]
