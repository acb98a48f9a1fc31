"""The Klaviyo API surface, independent of HTTP plumbing: routing, auth, revision, scopes, rate limits.

Checks run in the order a client experiences them: unknown path (404) and wrong method (405), then the
API key (401), the `revision` header (400), scopes (403), rate limits (429), and finally the operation's
own validation. Only requests that reach the rate limiter count against the budget.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .account import SimulatedAccount
from .account_config import SimulatorConfig
from .error_documents import ApiError, invalid, throttled_document
from .fixed_windows import FixedWindowLimiter
from .query import Query, check_known_parameters, csv_values, to_query
from .recording import Headers
from .reports import series_report, values_report
from .rules import (
    ACCOUNTS_PATH,
    ACCOUNTS_RATE_LIMIT,
    JSON_API_MEDIA_TYPE,
    REPORTS_RATE_LIMIT,
    SCOPE_ACCOUNTS,
    SCOPE_SEGMENTS,
    SEGMENT_SERIES_PATH,
    SEGMENT_VALUES_PATH,
    SEGMENTS_INCLUDE_RATE_LIMIT,
    SEGMENTS_PATH,
    SEGMENTS_RATE_LIMIT,
    RateLimit,
)
from .segments_api import get_segment, list_segments

SEGMENTS_FAMILY = "segments"
ACCOUNTS_FAMILY = "accounts"
REPORTS_FAMILY = "reports"
# requests with `include` also count against this stricter bucket
SEGMENTS_INCLUDE_FAMILY = "segments-include"

# Both report endpoints share one bucket, daily count included.
FAMILY_LIMITS: dict[str, RateLimit] = {
    SEGMENTS_FAMILY: SEGMENTS_RATE_LIMIT,
    ACCOUNTS_FAMILY: ACCOUNTS_RATE_LIMIT,
    REPORTS_FAMILY: REPORTS_RATE_LIMIT,
    SEGMENTS_INCLUDE_FAMILY: SEGMENTS_INCLUDE_RATE_LIMIT,
}

_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9]+)?$")
_AUTH_SCHEME = "Klaviyo-API-Key"
ACCOUNT_FIELDS = (
    "contact_information",
    "contact_information.default_sender_email",
    "contact_information.default_sender_name",
    "contact_information.organization_name",
    "contact_information.street_address",
    "contact_information.street_address.address1",
    "contact_information.street_address.address2",
    "contact_information.street_address.city",
    "contact_information.street_address.country",
    "contact_information.street_address.region",
    "contact_information.street_address.zip",
    "contact_information.website_url",
    "industry",
    "locale",
    "preferred_currency",
    "public_api_key",
    "test_account",
    "timezone",
)
_ORGANIZATIONS = ("Mint Vinyl Co.", "Northwind Outfitters", "Café Lumière", "Juniper & Pine", "Harbor Street Goods")


@dataclass
class ApiRequest:
    """One HTTP request, already read from the socket.

    Attributes:
        method: Upper-case HTTP method.
        path: Path without the query string.
        query_items: Decoded `(name, value)` pairs.
        raw_query: The query string as sent (for `links.self`).
        headers: Request headers.
        body: Raw body bytes.
        base_url: Scheme and host the client used, for links.
    """

    method: str
    path: str
    query_items: list[tuple[str, str]]
    raw_query: str
    headers: Headers
    body: bytes
    base_url: str

    @property
    def url(self) -> str:
        """The full URL that was requested."""
        return f"{self.base_url}{self.path}" + (f"?{self.raw_query}" if self.raw_query else "")


@dataclass
class ApiResponse:
    """What to send back.

    Attributes:
        status: HTTP status.
        body: JSON-ready body.
        headers: Extra response headers.
        family: Endpoint family that handled it, if any.
    """

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    family: str | None = None


Handler = Callable[[ApiRequest, Query, dict[str, str]], Any]


@dataclass(frozen=True)
class _Operation:
    family: str
    scope: str
    handler: Handler


class KlaviyoApi:
    """Routes requests to the simulated operations and enforces the cross-cutting rules.

    Args:
        account: The simulated account.
        config: The simulator configuration (API key, missing scopes).
        limiter: Rate limiter keyed by family name.
    """

    def __init__(self, account: SimulatedAccount, config: SimulatorConfig, limiter: FixedWindowLimiter) -> None:
        self._account = account
        self._config = config
        self._limiter = limiter
        # a revoked key (KlaviyoSimulator.revoke_key) is refused like a wrong one, as Klaviyo does
        self.key_revoked = False
        self._routes: list[tuple[re.Pattern[str], dict[str, _Operation]]] = [
            (
                re.compile(re.escape(ACCOUNTS_PATH)),
                {"GET": _Operation(ACCOUNTS_FAMILY, SCOPE_ACCOUNTS, self._accounts)},
            ),
            (
                re.compile(re.escape(SEGMENTS_PATH)),
                {"GET": _Operation(SEGMENTS_FAMILY, SCOPE_SEGMENTS, self._segments)},
            ),
            (
                re.compile(re.escape(SEGMENTS_PATH) + r"/(?P<id>[^/]+)"),
                {"GET": _Operation(SEGMENTS_FAMILY, SCOPE_SEGMENTS, self._segment)},
            ),
            (
                re.compile(re.escape(SEGMENT_SERIES_PATH)),
                {"POST": _Operation(REPORTS_FAMILY, SCOPE_SEGMENTS, self._series)},
            ),
            (
                re.compile(re.escape(SEGMENT_VALUES_PATH)),
                {"POST": _Operation(REPORTS_FAMILY, SCOPE_SEGMENTS, self._values)},
            ),
        ]

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Answer one request.

        Args:
            request: The request.

        Returns:
            The response (errors included; never raises for client mistakes).
        """
        family: str | None = None
        rate_headers: dict[str, str] = {}
        try:
            operation, path_params = self._route(request)
            family = operation.family
            self._authenticate(request.headers)
            self._check_revision(request.headers)
            if operation.scope in self._config.missing_scopes:
                raise ApiError(
                    403,
                    f"This API key is missing the '{operation.scope}' scope, which this endpoint requires. "
                    "Add the scope to the private key.",
                )
            decision = self._limiter.acquire(family)
            if decision.allowed and family == SEGMENTS_FAMILY and any(n == "include" for n, _ in request.query_items):
                decision = self._limiter.acquire(SEGMENTS_INCLUDE_FAMILY)
            if not decision.allowed:
                return ApiResponse(429, throttled_document(decision.retry_after), decision.headers(), family)
            rate_headers = decision.headers()
            body = operation.handler(request, to_query(request.query_items), path_params)
            return ApiResponse(200, body, dict(rate_headers), family)
        except ApiError as error:
            return ApiResponse(error.status, error.document(), {**rate_headers, **error.headers}, family)

    # -- cross-cutting checks ------------------------------------------------------------------------------

    def _route(self, request: ApiRequest) -> tuple[_Operation, dict[str, str]]:
        for pattern, operations in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            operation = operations.get(request.method)
            if operation is None:
                allowed = ", ".join(sorted(operations))
                raise ApiError(
                    405,
                    f'Method "{request.method}" not allowed on {request.path}; allowed: {allowed}.',
                    headers={"Allow": allowed},
                )
            return operation, match.groupdict()
        hint = " (Klaviyo paths have no trailing slash)" if request.path.endswith("/") else ""
        raise ApiError(404, f"No API endpoint at {request.path}{hint}.")

    def _authenticate(self, headers: Headers) -> None:
        value = headers.get("Authorization")
        if not value:
            raise ApiError(401, f"Missing Authorization header; send 'Authorization: {_AUTH_SCHEME} <private key>'.")
        scheme, _, key = value.partition(" ")
        if scheme != _AUTH_SCHEME or key.strip() != self._config.api_key or self.key_revoked:
            raise ApiError(
                401,
                f"Incorrect authentication credentials: expected '{_AUTH_SCHEME} <private key>' with a valid key.",
                title="Incorrect authentication credentials.",
            )

    @staticmethod
    def _check_revision(headers: Headers) -> None:
        value = headers.get("revision")
        if value is None:
            raise invalid("The revision header is required (format: YYYY-MM-DD[.suffix]).", parameter="revision")
        match = _REVISION.match(value.strip())
        valid = False
        if match:
            try:
                dt.date.fromisoformat(match.group(1))
                valid = True
            except ValueError:
                valid = False
        if not valid:
            raise invalid(f"'{value}' is not a valid revision (format: YYYY-MM-DD[.suffix]).", parameter="revision")

    @staticmethod
    def _json_body(request: ApiRequest) -> Any:
        content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type not in (JSON_API_MEDIA_TYPE, "application/json"):
            raise ApiError(
                415,
                f"Unsupported media type '{content_type or 'none'}'; send Content-Type: {JSON_API_MEDIA_TYPE}.",
            )
        if not request.body:
            raise invalid("A request body is required.", pointer="/data")
        try:
            return json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise invalid(f"The request body is not valid JSON: {exc}.", pointer="/") from None

    # -- operations ----------------------------------------------------------------------------------------

    def _accounts(self, request: ApiRequest, query: Query, _: dict[str, str]) -> Any:
        check_known_parameters(query, ("fields[account]",))
        for value in csv_values(query.get("fields[account]", "")):
            if value not in ACCOUNT_FIELDS:
                raise invalid(f"'{value}' is not a valid value for fields[account].", parameter="fields[account]")
        account = self._account
        organization = _ORGANIZATIONS[self._config.seed % len(_ORGANIZATIONS)]
        domain = f"{account.account_id.lower()}.example.com"
        resource = {
            "type": "account",
            "id": account.account_id,
            "attributes": {
                "test_account": False,
                "contact_information": {
                    "default_sender_name": organization,
                    "default_sender_email": f"hello@{domain}",
                    "website_url": f"https://{domain}",
                    "organization_name": organization,
                    "street_address": {
                        "address1": "125 Summer Street",
                        "address2": None,
                        "city": "Boston",
                        "region": "MA",
                        "country": "US",
                        "zip": "02110",
                    },
                },
                "industry": "Apparel & Accessories",
                "timezone": account.timezone,
                "preferred_currency": "USD",
                "public_api_key": account.account_id,
                "locale": "en-US",
            },
            "links": {"self": f"{request.base_url}{ACCOUNTS_PATH}/{account.account_id}"},
        }
        return {"data": [resource], "links": {"self": request.url}}

    def _segments(self, request: ApiRequest, query: Query, _: dict[str, str]) -> Any:
        return list_segments(self._account, query, request.base_url, request.url)

    def _segment(self, request: ApiRequest, query: Query, params: dict[str, str]) -> Any:
        return get_segment(self._account, params["id"], query, request.base_url, request.url)

    def _series(self, request: ApiRequest, query: Query, _: dict[str, str]) -> Any:
        body = self._json_body(request)
        return series_report(self._account, body, query, f"{request.base_url}{SEGMENT_SERIES_PATH}")

    def _values(self, request: ApiRequest, query: Query, _: dict[str, str]) -> Any:
        body = self._json_body(request)
        return values_report(self._account, body, query, f"{request.base_url}{SEGMENT_VALUES_PATH}")
