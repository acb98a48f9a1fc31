"""The dbt project, located from this file so it is found whatever the working directory.

The manifest is built by `make manifest` (dbt parse) and by the test suite, never committed; `dagster dev`
rebuilds it on each load.
"""

import os
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"

# dagster-dbt runs the `dbt` it finds on PATH (for runs, and for `dagster dev`'s re-parse). In a virtualenv
# that was never activated, dbt sits only beside this Python: put that directory on PATH for this process
# and the dbt processes it starts.
_VENV_BIN = Path(sys.executable).parent
if shutil.which("dbt") is None and (_VENV_BIN / "dbt").exists():
    os.environ["PATH"] = f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()
