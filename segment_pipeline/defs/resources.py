"""Dagster resources: thin wrappers that build the Klaviyo client and name the warehouse paths at run time.

Nothing here reads a secret at import: the API key is read from KLAVIYO_API_KEY when a run starts, goes
straight into the client, and never into Dagster config, logs or metadata.
"""

import dataclasses
from pathlib import Path

import dagster as dg

from ..config import PipelineSettings
from ..klaviyo import KlaviyoClient, KlaviyoSettings, ReportLedgers
from ..warehouse import dlt_pipeline

# Every step that opens the DuckDB file runs in this pool; dagster_home/dagster.yaml limits pools to 1,
# so parallel runs and backfills queue for the file instead of failing on DuckDB's single-writer lock.
DUCKDB_POOL = "duckdb_writer"


class WarehouseResource(dg.ConfigurableResource):
    """Paths of the warehouse and of the pipeline's state. Unset fields come from the environment."""

    warehouse_path: str | None = None
    analytics_path: str | None = None
    state_dir: str | None = None
    charts_dir: str | None = None

    def settings(self) -> PipelineSettings:
        base = PipelineSettings.from_env()
        return PipelineSettings(
            warehouse_path=Path(self.warehouse_path).resolve() if self.warehouse_path else base.warehouse_path,
            analytics_path=Path(self.analytics_path).resolve() if self.analytics_path else base.analytics_path,
            state_dir=Path(self.state_dir).resolve() if self.state_dir else base.state_dir,
            charts_dir=Path(self.charts_dir).resolve() if self.charts_dir else base.charts_dir,
            lookback_days=base.lookback_days,
        )

    def pipeline(self, name: str):
        settings = self.settings()
        return dlt_pipeline(name, settings.warehouse_path, settings.dlt_pipelines_dir)


class KlaviyoResource(dg.ConfigurableResource):
    """Builds a KlaviyoClient from the KLAVIYO_* environment; fields set here override it (tests, demos)."""

    base_url: str | None = None
    report_rate_per_minute: float | None = None

    def client(self, warehouse: WarehouseResource) -> KlaviyoClient:
        overrides = {}
        if self.base_url:
            overrides["base_url"] = self.base_url.rstrip("/")
        if self.report_rate_per_minute:
            overrides["report_rate_per_minute"] = self.report_rate_per_minute
        settings = KlaviyoSettings.from_env(**overrides)
        paths = warehouse.settings()
        if settings.ledger_dir is None:
            settings = dataclasses.replace(settings, ledger_dir=str(paths.report_ledger_dir))
        ledgers = ReportLedgers(
            settings.report_daily_limit,
            settings.ledger_dir,
            window_seconds=settings.report_budget_window_seconds,
            legacy_file=paths.legacy_report_ledger_path,
        )
        return KlaviyoClient(settings, ledgers=ledgers)
