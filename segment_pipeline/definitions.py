"""The Dagster code location: `dagster dev` (via workspace.yaml) and `dagster ... -m segment_pipeline.definitions`.

The accounts come from KLAVIYO_ACCOUNTS_FILE, or are the one account of the KLAVIYO_* variables; each gets
its assets, job, schedule and Klaviyo resource (`defs/deployment.py`). A bad accounts file stops the load
with one line per problem.
"""

import dagster as dg
from dagster_dbt import DbtCliResource

from .defs.deployment import build_deployment
from .defs.resources import WarehouseResource
from .defs.transform.project import dbt_project

# read once, when the code loads: the UI shows these values under Deployment > Resources
warehouse = WarehouseResource.from_env()
deployment = build_deployment(warehouse)

defs = dg.Definitions(
    assets=deployment.assets,
    asset_checks=deployment.asset_checks,
    jobs=deployment.jobs,
    schedules=deployment.schedules,
    sensors=deployment.sensors,
    # every step of a run uses the one DuckDB file in turn, so there is nothing to run in parallel inside a
    # run (accounts run in parallel as runs of their own jobs); one process also saves loading the code again
    # for each step. The daily jobs and runs launched from the UI use it.
    executor=dg.in_process_executor,
    resources={**deployment.resources, "warehouse": warehouse, "dbt": DbtCliResource(project_dir=dbt_project)},
)
