"""A Klaviyo client for segments and segment reports, with the request planner. No Dagster here."""

from .client import Account, KlaviyoClient, RequestStats
from .errors import (
    ErrorDetail,
    KlaviyoAPIError,
    KlaviyoAuthError,
    KlaviyoConfigError,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoQuotaExhausted,
    KlaviyoResponseError,
    KlaviyoServerError,
    ReportBudgetError,
    ReportWindowError,
)
from .pacing import ReportBudget
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
    "Account",
    "ApiKey",
    "DayWindow",
    "ErrorDetail",
    "KlaviyoAPIError",
    "KlaviyoAuthError",
    "KlaviyoClient",
    "KlaviyoConfigError",
    "KlaviyoError",
    "KlaviyoNotFoundError",
    "KlaviyoQuotaExhausted",
    "KlaviyoResponseError",
    "KlaviyoServerError",
    "KlaviyoSettings",
    "ReportBudget",
    "ReportBudgetError",
    "ReportWindowError",
    "RequestStats",
    "SERIES_ROW_SCHEMA",
    "SeriesRequest",
    "check_reporting_window",
    "earliest_reportable_day",
    "minimal_request_count",
    "plan_series_requests",
    "series_rows",
]
