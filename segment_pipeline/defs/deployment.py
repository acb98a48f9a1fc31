"""The code location, built from the settings: `build_definitions(settings)` is the one factory.

For every account (the one `default` of a deployment without an accounts file included): its segments and
series assets (partitioned by its own days from its history start) in group `klaviyo_<name>`, its series
checks and reconciliation check, its resource, its ingestion job and its schedule at 06:00 local. For every
Segments API workspace (`platform: segments_api`, or SEGMENTS_API_KEY): its unpartitioned snapshot asset, its
check, job and daily schedule (defs/segments_api.py). Then one set of shared assets downstream of every
account: the dbt models, the analyst copy and the report, built by the shared build's automation condition;
and one resume sensor for every account's unfinished ranges.

Why a factory per account rather than multi-partitions: a partitions definition has one timezone, and each
account's days are its own (docs/architecture.md).
"""

from __future__ import annotations

import dagster as dg

from ..ingest.access import KlaviyoAccess
from ..segments_api.access import SegmentsApiWorkspace
from ..settings import Settings
from .account_names import asset_key
from .automation import build_automation_sensor
from .ingest.assets import build_account_assets
from .ingest.checks import build_series_checks
from .ingest.resume_sensor import build_resume_sensor
from .partitions import account_partitions
from .publish.assets import build_publishing
from .quality.anomalies import no_anomalies_on_the_newest_day
from .quality.reconciliation import build_reconciliation_check
from .resources import build_resources
from .schedules import build_account_job, build_daily_schedule
from .segments_api import build_workspace, workspace_resource_key
from .transform.assets import build_models


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every definition of the deployment `settings` describes."""
    accounts = {account.name: KlaviyoAccess(settings, account) for account in settings.accounts}
    workspaces = {w.name: SegmentsApiWorkspace(settings, w) for w in settings.segments_api_workspaces}
    models = build_models(tuple(accounts), tuple(workspaces))
    publishing = build_publishing(models.keys, lake=settings.storage.lake is not None)
    assets: list = [models, *publishing]
    checks: list = [no_anomalies_on_the_newest_day]
    jobs, schedules, series_keys = [], [], {}
    for name, access in accounts.items():
        segments, series = build_account_assets(access, account_partitions(access))
        series_keys[name] = series.key
        job = build_account_job(name, dg.AssetSelection.assets(segments, series))
        assets += [segments, series]
        checks += [*build_series_checks(name, series.key), build_reconciliation_check(access, series.key)]
        jobs.append(job)
        schedules.append(build_daily_schedule(name, job))
    for access in workspaces.values():
        snapshot, check, job, schedule = build_workspace(access, settings.segments_api.schedule_hour)
        assets.append(snapshot)
        checks.append(check)
        jobs.append(job)
        schedules.append(schedule)
    shared = dg.AssetSelection.assets(models, *publishing)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[
            build_resume_sensor(accounts, series_keys, settings.resume_interval_seconds),
            build_automation_sensor(shared),
        ],
        # every step of a run uses the one DuckDB file in turn, so there is nothing to run in parallel inside a
        # run (accounts run in parallel as runs of their own); one process also saves loading the code again
        # for each step
        executor=dg.in_process_executor,
        resources={
            **build_resources(settings, accounts),
            **{workspace_resource_key(name): access for name, access in workspaces.items()},
        },
    )


__all__ = ["asset_key", "build_definitions"]
