"""A Klaviyo client for segments and segment reports, with the request planner. No Dagster here.

The names below are imported from their modules when first used, so that a caller needing one light module
(the limits, the errors, the settings) does not load the HTTP client's retries or Arrow at import."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import Account, KlaviyoClient, RequestStats
    from .errors import (
        KLAVIYO_QUOTA,
        PIPELINE_LIMIT,
        ErrorDetail,
        IncompleteSeriesResponse,
        KlaviyoAPIError,
        KlaviyoAuthError,
        KlaviyoConfigError,
        KlaviyoError,
        KlaviyoForeignHostError,
        KlaviyoNotFoundError,
        KlaviyoQuotaExhausted,
        KlaviyoResponseError,
        KlaviyoServerError,
        ReportBudgetError,
        ReportLedgerError,
        ReportWindowError,
    )
    from .fetch import SeriesResponse, fetch_series
    from .ledger import ReportBudget, ReportLedgers
    from .planner import (
        DayWindow,
        SeriesRequest,
        check_reporting_window,
        earliest_reportable_day,
        minimal_request_count,
        plan_series_requests,
    )
    from .series import SERIES_ROW_SCHEMA, series_rows
    from .settings import ApiKey, KlaviyoSettings

# each public name and the module that defines it
_MODULES = {
    "Account": "client",
    "KlaviyoClient": "client",
    "RequestStats": "client",
    "KLAVIYO_QUOTA": "errors",
    "PIPELINE_LIMIT": "errors",
    "ErrorDetail": "errors",
    "IncompleteSeriesResponse": "errors",
    "KlaviyoAPIError": "errors",
    "KlaviyoAuthError": "errors",
    "KlaviyoConfigError": "errors",
    "KlaviyoError": "errors",
    "KlaviyoForeignHostError": "errors",
    "KlaviyoNotFoundError": "errors",
    "KlaviyoQuotaExhausted": "errors",
    "KlaviyoResponseError": "errors",
    "KlaviyoServerError": "errors",
    "ReportBudgetError": "errors",
    "ReportLedgerError": "errors",
    "ReportWindowError": "errors",
    "SeriesResponse": "fetch",
    "fetch_series": "fetch",
    "ReportBudget": "ledger",
    "ReportLedgers": "ledger",
    "DayWindow": "planner",
    "SeriesRequest": "planner",
    "check_reporting_window": "planner",
    "earliest_reportable_day": "planner",
    "minimal_request_count": "planner",
    "plan_series_requests": "planner",
    "SERIES_ROW_SCHEMA": "series",
    "series_rows": "series",
    "ApiKey": "settings",
    "KlaviyoSettings": "settings",
}

__all__ = [
    "KLAVIYO_QUOTA",
    "PIPELINE_LIMIT",
    "Account",
    "ApiKey",
    "DayWindow",
    "ErrorDetail",
    "IncompleteSeriesResponse",
    "KlaviyoAPIError",
    "KlaviyoAuthError",
    "KlaviyoClient",
    "KlaviyoConfigError",
    "KlaviyoError",
    "KlaviyoForeignHostError",
    "KlaviyoNotFoundError",
    "KlaviyoQuotaExhausted",
    "KlaviyoResponseError",
    "KlaviyoServerError",
    "KlaviyoSettings",
    "ReportBudget",
    "ReportBudgetError",
    "ReportLedgerError",
    "ReportLedgers",
    "ReportWindowError",
    "RequestStats",
    "SERIES_ROW_SCHEMA",
    "SeriesRequest",
    "SeriesResponse",
    "check_reporting_window",
    "earliest_reportable_day",
    "fetch_series",
    "minimal_request_count",
    "plan_series_requests",
    "series_rows",
]


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    globals()[name] = value
    return value
