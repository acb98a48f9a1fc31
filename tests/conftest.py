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
    "WAREHOUSE_DATA_PATH",
    "DUCKDB_EXTENSION_DIR",
    "ANALYTICS_PATH",
    "PIPELINE_STATE_DIR",
):
    os.environ.pop(name, None)

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_project"

pytest_plugins = ["tests.simulator_fixtures", "tests.postgres_fixtures", "tests.browser_fixtures"]


# The fast tier (`make test-fast`, `pytest -m fast`): pure logic, no servers, no Dagster processes, no dbt;
# under a minute in all, for the edit-test loop. A module listed here must stay that way.
FAST_MODULES = {
    "test_accounts_file",
    "test_code_structure",
    "test_definition_history_upgrade",
    "test_docs",
    "test_openapi_contract",
    "test_pacing",
    "test_planner",
    "test_resume_tags",
    "test_series_rows",
    "test_settings",
}


def fast_test_files() -> list[str]:
    """The fast tier's files, for `make test-fast` (collecting only them keeps it quick)."""
    return [f"tests/{name}.py" for name in sorted(FAST_MODULES) if (REPO / "tests" / f"{name}.py").exists()]


# The longest modules, longest first (measured with `pytest --durations`, several minutes each). `make test`
# hands whole files to the workers in collection order, so these start first: one started last would run on
# alone long after the others finished. Keep the list to the modules of more than about two minutes.
LONGEST_MODULES = (
    "test_dagster_backfill",
    "test_demo_scale",
    "test_incremental_marts",
    "test_backfill",
    "test_account_names_in_marts",
    "test_crash_and_resume",
    "test_full_pipeline",
    "test_ingest_assets",
    "test_demo",
    "test_lake_pipeline",
    "test_segments_api_marts",
    "test_models_build_once",
)


def _module_name(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _module_name(item) in FAST_MODULES:
            item.add_marker(pytest.mark.fast)
    rank = {name: position for position, name in enumerate(LONGEST_MODULES)}
    # a stable sort: the other modules keep their order after these, and each module its tests' order
    items.sort(key=lambda item: rank.get(_module_name(item), len(rank)))


def _fast_tier_only(config) -> bool:
    return (config.getoption("markexpr", default="") or "").strip() == "fast"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """Build dbt's manifest once per run (the Dagster definitions read it when imported).

    Under pytest-xdist only the controlling process builds it, before the workers start: two dbt parses
    writing one target directory at once could leave a half-written manifest.
    """
    if hasattr(session.config, "workerinput") or _fast_tier_only(session.config):
        return
    env = {**os.environ, "WAREHOUSE_PATH": str(REPO / "data" / "parse-only.duckdb")}
    subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "parse", "--profiles-dir", str(DBT_PROJECT), "--quiet"],
        cwd=DBT_PROJECT,
        env=env,
        check=True,
    )
