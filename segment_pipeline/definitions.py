"""The Dagster code location: `dagster dev` (via workspace.yaml) and `dagster ... -m segment_pipeline.definitions`."""

import dagster as dg
from dagster_dbt import DbtCliResource

from .defs.ingest.assets import segment_series_daily, segments
from .defs.ingest.checks import series_checks
from .defs.ingest.resume_sensor import segment_growth_resume_sensor
from .defs.publish.assets import analytics_copy, growth_chart
from .defs.quality.anomalies import no_anomalies_on_the_newest_day
from .defs.quality.reconciliation import series_reconciles_with_klaviyo
from .defs.resources import KlaviyoResource, WarehouseResource
from .defs.schedules import daily_schedule, segment_growth_job
from .defs.transform.assets import segment_growth_models
from .defs.transform.project import dbt_project

# read once, when the code loads: the UI shows these values under Deployment > Resources
warehouse = WarehouseResource.from_env()

defs = dg.Definitions(
    assets=[segments, segment_series_daily, segment_growth_models, analytics_copy, growth_chart],
    asset_checks=[*series_checks, series_reconciles_with_klaviyo, no_anomalies_on_the_newest_day],
    jobs=[segment_growth_job],
    schedules=[daily_schedule],
    sensors=[segment_growth_resume_sensor],
    # every step uses the one DuckDB file in turn, so there is nothing to run in parallel; one process also
    # saves loading the code again for each step. The daily job and runs launched from the UI use it.
    executor=dg.in_process_executor,
    resources={
        # the key is dg.EnvVar("KLAVIYO_API_KEY"): the UI shows the variable's name, never its value
        "klaviyo": KlaviyoResource.from_env(warehouse),
        "warehouse": warehouse,
        "dbt": DbtCliResource(project_dir=dbt_project),
    },
)
