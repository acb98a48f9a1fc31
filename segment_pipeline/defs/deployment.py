"""The deployment's definitions, account by account: what `definitions.py` hands to Dagster.

Without an accounts file there is one account, `default`, with the definitions the project always had
(`klaviyo/segments`, `segment_growth_job`, ...). With the file, every account gets its own (an asset factory,
names from `account_names`):

- assets `klaviyo/<name>/segments` (and its definitions, account and tags tables) and
  `klaviyo/<name>/segment_series_daily`, partitioned by days in the account's own timezone, in the asset
  group `klaviyo_<name>`, with the account's series checks and reconciliation check;
- its Klaviyo resource `klaviyo_<name>` (key variable, pace, budget, lookback, segment filter);
- its job `segment_growth_<name>_job`: its ingestion, then the shared dbt models and publishing;
- its schedule at 06:00 in its own timezone.

The dbt models, the analyst copy and the chart are one set, downstream of every account. One sensor resumes
every account's unfinished backfills. Why a factory rather than multi-partitions: see README, "Several
Klaviyo accounts".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from ..accounts import Accounts, load_accounts
from .account_names import resource_key
from .ingest.assets import build_ingest_assets, segment_series_daily, segments
from .ingest.checks import build_series_checks, series_checks
from .ingest.resume_sensor import build_resume_sensor, segment_growth_resume_sensor
from .partitions import account_partitions
from .publish.assets import analytics_copy, growth_chart
from .quality.anomalies import no_anomalies_on_the_newest_day
from .quality.reconciliation import build_reconciliation_check, series_reconciles_with_klaviyo
from .resources import KlaviyoResource, WarehouseResource
from .schedules import build_account_job, build_daily_schedule, daily_schedule, segment_growth_job
from .transform.assets import build_dbt_assets, segment_growth_models


@dataclass
class Deployment:
    """Every definition of the code location but the dbt resource."""

    assets: list = field(default_factory=list)
    asset_checks: list = field(default_factory=list)
    jobs: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    sensors: list = field(default_factory=list)
    resources: dict = field(default_factory=dict)


def build_deployment(
    warehouse: WarehouseResource, accounts: Accounts | None = None, env: Mapping[str, str] | None = None
) -> Deployment:
    """The definitions for the deployment's accounts (default: those `load_accounts` reads from `env`).

    Raises:
        AccountsFileError: The accounts file has problems (each with its line): the code location does not load.
    """
    env = os.environ if env is None else env
    accounts = load_accounts(env) if accounts is None else accounts
    publishing = [analytics_copy, growth_chart]
    if accounts.source is None:
        return Deployment(
            assets=[segments, segment_series_daily, segment_growth_models, *publishing],
            asset_checks=[*series_checks, series_reconciles_with_klaviyo, no_anomalies_on_the_newest_day],
            jobs=[segment_growth_job],
            schedules=[daily_schedule],
            sensors=[segment_growth_resume_sensor],
            # the key is dg.EnvVar("KLAVIYO_API_KEY"): the UI shows the variable's name, never its value
            resources={"klaviyo": KlaviyoResource.from_env(warehouse, env)},
        )

    models = build_dbt_assets(accounts.names)
    shared = dg.AssetSelection.assets(models, *publishing)
    deployment = Deployment(assets=[models, *publishing], asset_checks=[no_anomalies_on_the_newest_day])
    jobs = {}
    for account in accounts:
        partitions = account_partitions(account.timezone)
        account_segments, account_series = build_ingest_assets(account.name, partitions)
        series_key = account_series.key
        job = build_account_job(account.name, dg.AssetSelection.assets(account_segments, account_series) | shared)
        jobs[account.name] = job
        deployment.assets += [account_segments, account_series]
        deployment.asset_checks += [
            *build_series_checks(account.name, series_key),
            build_reconciliation_check(account.name, series_key, account.timezone),
        ]
        deployment.jobs.append(job)
        deployment.schedules.append(build_daily_schedule(account.name, job))
        # the key is dg.EnvVar(<its api_key_env>): the UI shows the variable's name, never its value
        deployment.resources[resource_key(account.name)] = KlaviyoResource.for_account(
            account, warehouse, accounts, env
        )
    deployment.sensors.append(build_resume_sensor(jobs))
    return deployment
