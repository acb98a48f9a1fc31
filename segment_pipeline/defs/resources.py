"""The code location's resources: plain objects built from the settings, no configuration of their own.

- `warehouse`: the DuckDB warehouse (`segment_pipeline.warehouse.Warehouse`): its lock, reads and dlt pipelines.
- `klaviyo_<account>`: one account's access (`segment_pipeline.ingest.access.KlaviyoAccess`): its client, with
  the key read from its variable when a run starts, its report ledger and its fetch lock.
- `dbt`: dagster-dbt's CLI resource on the project in `dbt_project/` (`transform.dbt_library.DbtCli`).

The settings are read once, by `segment_pipeline.settings.load_settings`; the resources hold them, they do not
copy them. The UI lists every resource and which assets use it; the values are in docs/configuration.md.
"""

from __future__ import annotations

from ..ingest.access import KlaviyoAccess
from ..settings import Settings
from ..warehouse import Warehouse
from .account_names import resource_key
from .transform.dbt_library import DbtCli
from .transform.project import dbt_executable, dbt_project


def build_resources(settings: Settings, accounts: dict[str, KlaviyoAccess]) -> dict:
    return {
        "warehouse": Warehouse(settings.storage),
        "dbt": DbtCli(project_dir=dbt_project, dbt_executable=dbt_executable()),
        **{resource_key(name): access for name, access in accounts.items()},
    }
