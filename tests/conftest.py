"""Test set-up shared by every test module."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The Dagster code reads these when it is imported: fix them before any test imports it, so the
# partitions are the simulator's days and nothing is written outside the temporary directories.
os.environ["KLAVIYO_TIMEZONE"] = "US/Eastern"
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
for name in (
    "KLAVIYO_BASE_URL",
    "KLAVIYO_BUDGET_PATH",
    "KLAVIYO_REPORT_LEDGER_DIR",
    "WAREHOUSE_PATH",
    "ANALYTICS_PATH",
    "PIPELINE_STATE_DIR",
):
    os.environ.pop(name, None)

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_project"

pytest_plugins = ["tests.simulator_fixtures", "tests.postgres_fixtures"]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """Build dbt's manifest once per run (the Dagster definitions read it when imported).

    Under pytest-xdist only the controlling process builds it, before the workers start: two dbt parses
    writing one target directory at once could leave a half-written manifest.
    """
    if hasattr(session.config, "workerinput"):
        return
    env = {**os.environ, "WAREHOUSE_PATH": str(REPO / "data" / "parse-only.duckdb")}
    subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "parse", "--profiles-dir", str(DBT_PROJECT), "--quiet"],
        cwd=DBT_PROJECT,
        env=env,
        check=True,
    )
