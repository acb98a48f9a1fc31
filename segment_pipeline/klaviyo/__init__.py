"""A Klaviyo client for segments and segment reports, with the request planner. No Dagster here."""

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
