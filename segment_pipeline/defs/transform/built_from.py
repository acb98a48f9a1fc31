"""What the marts were last built from: the warehouse's committed loads and the dbt project's manifest.

Accounts run their jobs at the same time, and every run ends with the same dbt build over every account's
rows. When several runs finish together, the first build (under the warehouse lock) already includes every
load committed before it; a later run whose loads were all in it would only rebuild the same tables. A run
skips the build when nothing changed since a complete build *and its publishing*: the same committed dlt
loads (`_dlt_loads`) and the same manifest (a new version of the models always builds), recorded by the
models, the analyst copy and the chart each after it succeeded. A run killed after the build but before
the copy or the chart therefore leaves the next run to build and publish again. Only a build of every
model counts, and `full_refresh` never skips. The records are small JSON files in `<state dir>/built_from/`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ...state_files import write_atomically
from ...tables import RAW_DATASET
from ...warehouse import read_connection


def current_inputs(warehouse_path: Path, manifest_path: Path) -> dict | None:
    """The loads committed to the warehouse and the manifest's digest; None when there is nothing to compare."""
    if not warehouse_path.exists() or not manifest_path.exists():
        return None
    with read_connection(warehouse_path) as connection:
        found = connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = '_dlt_loads'",
            [RAW_DATASET],
        ).fetchone()[0]
        if not found:
            return None
        loads, newest = connection.execute(
            f"select count(*), max(load_id) from {RAW_DATASET}._dlt_loads where status = 0"
        ).fetchone()
    manifest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    return {"loads": loads, "newest_load_id": newest, "manifest_sha256": manifest}


# the steps that must all be current for a run to skip the build (each skipped step's successors are skipped)
STEPS = ("models", "analytics_copy", "growth_chart")


def _path(state_dir: Path, step: str) -> Path:
    return state_dir / "built_from" / f"{step}.json"


def last_built_from(state_dir: Path, step: str = "models") -> dict | None:
    """The inputs of a step's last complete success, or None (never, or a record that cannot be read: build)."""
    try:
        record = json.loads(_path(state_dir, step).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # building again is always right
    return record if isinstance(record, dict) else None


def record_built_from(state_dir: Path, inputs: dict, run_id: str | None, step: str = "models") -> None:
    """Remember a step's inputs after it succeeded (temporary file and rename: a crash leaves the old record)."""
    record = json.dumps({**inputs, "run_id": run_id}).encode()
    write_atomically(_path(state_dir, step), record, what="the record of what the marts were built from")


def unchanged_since(record: dict | None, inputs: dict | None) -> bool:
    if record is None or inputs is None:
        return False
    return all(record.get(key) == value for key, value in inputs.items())


def all_current(state_dir: Path, inputs: dict | None) -> bool:
    """Whether the models, the analyst copy and the chart were all last made from exactly these inputs."""
    return all(unchanged_since(last_built_from(state_dir, step), inputs) for step in STEPS)


def inputs_only(record: dict | None) -> dict | None:
    """A record without its run id: the inputs it was made from."""
    return None if record is None else {key: value for key, value in record.items() if key != "run_id"}


def may_skip(state_dir: Path, inputs: dict | None, *, every_model: bool, full_refresh: bool) -> bool:
    """Whether a dbt step may skip its build: all of the models selected, no full refresh, and the models,
    the copy and the chart all made from exactly `inputs` (the loads committed now and this manifest)."""
    return every_model and not full_refresh and all_current(state_dir, inputs)
