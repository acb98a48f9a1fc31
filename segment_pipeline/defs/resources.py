"""Dagster resources: thin wrappers that build the Klaviyo client and name the warehouse paths at run time.

Nothing here reads a secret at import: the API key is read from KLAVIYO_API_KEY when a run starts, goes
straight into the client, and never into Dagster config, logs or metadata.
"""

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ..config import PipelineSettings
from ..klaviyo import ApiKey, KlaviyoClient, KlaviyoSettings, ReportBudget, ReportLedgers
from ..klaviyo.limits import REPORTS_RATE_LIMIT
from ..klaviyo.pacing import min_interval
from ..warehouse import dlt_pipeline, warehouse_lock


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

    @contextlib.contextmanager
    def lock(self, context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Iterator[None]:
        """Hold the warehouse file for this step (see `warehouse.warehouse_lock`); logs whom it waits for.

        Every step that opens the DuckDB file runs inside this. The lock is the kernel's: it dies with its
        process, so a killed run never blocks the next one.
        """
        with warehouse_lock(
            self.settings().warehouse_path,
            run_id=_context_property(context, lambda c: c.run.run_id),
            step=_context_property(context, lambda c: c.op_def.name),
            log=context.log.info,
        ):
            yield


def _context_property(context, read):
    """A run id or step name for the lock file; a directly invoked asset or check (tests) has neither."""
    try:
        return read(context)
    except (AttributeError, dg.DagsterError):
        return None


class KlaviyoResource(dg.ConfigurableResource):
    """Builds a KlaviyoClient from the KLAVIYO_* environment; fields set here override it (tests, demos)."""

    base_url: str | None = None
    report_rate_per_minute: float | None = None

    def _settings(self, **overrides) -> KlaviyoSettings:
        if self.base_url:
            overrides["base_url"] = self.base_url.rstrip("/")
        if self.report_rate_per_minute:
            overrides["report_rate_per_minute"] = self.report_rate_per_minute
        return KlaviyoSettings.from_env(**overrides)

    def ledgers(self, warehouse: WarehouseResource, settings: KlaviyoSettings | None = None) -> ReportLedgers:
        """The report ledgers, one per Klaviyo account (KLAVIYO_REPORT_LEDGER_DIR, or the state dir's)."""
        # reading a ledger needs no key (the resume sensor has none to give): a placeholder fills the field
        settings = settings or self._settings(api_key=ApiKey("not-used-to-read-the-ledger"))
        paths = warehouse.settings()
        return ReportLedgers(
            settings.report_daily_limit,
            settings.ledger_dir or str(paths.report_ledger_dir),
            window_seconds=settings.report_budget_window_seconds,
            legacy_file=paths.legacy_report_ledger_path,
        )

    def budget(self, warehouse: WarehouseResource, account_id: str) -> ReportBudget:
        """One account's report budget, read without a key (for the resume sensor)."""
        return self.ledgers(warehouse).for_account(account_id)

    def report_interval_seconds(self) -> float:
        """Seconds between report requests at the configured pace (for finish-time estimates)."""
        settings = self._settings(api_key=ApiKey("not-used-for-pacing"))
        return min_interval(REPORTS_RATE_LIMIT, settings.report_rate_per_minute)

    def client(self, warehouse: WarehouseResource) -> KlaviyoClient:
        settings = self._settings()
        if settings.ledger_dir is None:
            settings = dataclasses.replace(settings, ledger_dir=str(warehouse.settings().report_ledger_dir))
        return KlaviyoClient(settings, ledgers=self.ledgers(warehouse, settings))
