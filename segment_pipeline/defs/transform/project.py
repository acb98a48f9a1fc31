"""The dbt project, located from this file so it is found whatever the working directory.

The manifest is built by `make manifest` (dbt parse) and by the test suite, never committed; `dagster dev`
rebuilds it on each load.
"""

from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()
