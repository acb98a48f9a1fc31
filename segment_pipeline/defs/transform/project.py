"""The dbt project, located from this file so it is found whatever the working directory.

The manifest is built by `make manifest` (dbt parse) and by the test suite, never committed.
"""

import shutil
import sys
from pathlib import Path

from .dbt_library import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """The `dbt` beside this Python (a virtualenv that was never activated has it only there), else on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
