"""A small Klaviyo REST client on httpx for the segment and segment-report endpoints.

It knows nothing of Dagster or dlt. It pins the API revision, speaks JSON:API, paces each endpoint family
under Klaviyo's limits, retries what is worth retrying (429 after exactly `Retry-After`; 5xx, timeouts and
dropped connections with exponential backoff and jitter), fails fast when the daily quota is spent, and turns
4xx answers into typed errors that carry Klaviyo's own `detail` and `source`. The API key goes into the
Authorization header and nowhere else: not into logs, exception messages or reprs.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import __version__
from .errors import (
    ErrorDetail,
    KlaviyoAPIError,
    KlaviyoAuthError,
    KlaviyoNotFoundError,
    KlaviyoQuotaExhausted,
    KlaviyoResponseError,
    KlaviyoServerError,
)
from .limits import (
    ACCOUNTS_PATH,
    ACCOUNTS_RATE_LIMIT,
    API_REVISION,
    JSON_API_MEDIA_TYPE,
    REPORTS_RATE_LIMIT,
    SCOPE_ACCOUNTS,
    SCOPE_SEGMENTS,
    SEGMENT_SERIES_PATH,
    SEGMENT_VALUES_PATH,
    SEGMENTS_PAGE_SIZE,
    SEGMENTS_PATH,
    SEGMENTS_RATE_LIMIT,
    SERIES_STATISTICS,
)
from .pacing import Pacer, ReportBudget, min_interval
from .planner import DayWindow, custom_timeframe, series_filter
from .settings import ApiKey, KlaviyoSettings

logger = logging.getLogger(__name__)

USER_AGENT = f"segment-pipeline/{__version__}"

# endpoint families: each has its own limits, pacer and scope
SEGMENTS = "segments"
ACCOUNTS = "accounts"
REPORTS = "reports"
_SCOPES = {SEGMENTS: SCOPE_SEGMENTS, REPORTS: SCOPE_SEGMENTS, ACCOUNTS: SCOPE_ACCOUNTS}

# Statuses that say "try again later" rather than "your request is wrong".
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504, 524})
_BACKOFF_CAP_SECONDS = 30.0


@dataclass(frozen=True)
class Account:
    """The Klaviyo account a key belongs to."""

    id: str
    timezone: str
    name: str | None = None


@dataclass
class RequestStats:
    """What the client sent, for run metadata and tests."""

    sent: Counter = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0
    seconds_waited: float = 0.0

    def sent_for(self, family: str) -> int:
        return self.sent[family]


class _KlaviyoKeyAuth(httpx.Auth):
    """Adds `Authorization: Klaviyo-API-Key ...` to each request; holds the key without showing it."""

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Klaviyo-API-Key {self._key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_KlaviyoKeyAuth(key=********)"


def _error_details(response: httpx.Response) -> list[ErrorDetail]:
    """Parse a JSON:API error body leniently; a non-JSON body (an HTML 500 page) becomes one plain entry."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown content type").split(";")[0]
        return [ErrorDetail(detail=f"the response body was not JSON ({kind}, {len(response.content)} bytes)")]
    entries = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return [ErrorDetail(detail="the error body had no `errors` array")]
    details = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        source = entry.get("source") if isinstance(entry.get("source"), dict) else {}
        details.append(
            ErrorDetail(
                code=entry.get("code"),
                title=entry.get("title"),
                detail=entry.get("detail"),
                pointer=source.get("pointer"),
                parameter=source.get("parameter"),
            )
        )
    return details


def _retry_after_seconds(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class KlaviyoClient:
    """Reads accounts, segments and segment reports from Klaviyo.

    Args:
        settings: base URL, key, pacing and retry settings; `KlaviyoSettings.from_env()` reads them.
        budget: the daily report ledger; by default one at `settings.budget_path` (or in memory).
        transport: an httpx transport, for tests that need one.
        sleep: how to wait; tests may pass a recorder.
    """

    def __init__(
        self,
        settings: KlaviyoSettings,
        *,
        budget: ReportBudget | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.budget = budget or ReportBudget(
            settings.report_daily_limit, settings.budget_path, window_seconds=settings.report_budget_window_seconds
        )
        self.stats = RequestStats()
        self._sleep = self._counting_sleep(sleep)
        self._pacers = {
            SEGMENTS: Pacer(min_interval(SEGMENTS_RATE_LIMIT), sleep=self._sleep),
            ACCOUNTS: Pacer(min_interval(ACCOUNTS_RATE_LIMIT), sleep=self._sleep),
            REPORTS: Pacer(min_interval(REPORTS_RATE_LIMIT, settings.report_rate_per_minute), sleep=self._sleep),
        }
        self._http = httpx.Client(
            base_url=settings.base_url,
            auth=_KlaviyoKeyAuth(settings.api_key),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=min(10.0, settings.timeout_seconds)),
            headers={
                "revision": API_REVISION,
                "Accept": JSON_API_MEDIA_TYPE,
                "User-Agent": USER_AGENT,
            },
            transport=transport,
        )

    def _counting_sleep(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        def counted(seconds: float) -> None:
            self.stats.seconds_waited += seconds
            sleep(seconds)

        return counted

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self.settings.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KlaviyoClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # full jitter keeps several clients that failed together from retrying together
        ceiling = min(_BACKOFF_CAP_SECONDS, self.settings.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _raise_for_client_error(self, family: str, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        details = _error_details(response)
        scope = _SCOPES[family]
        if status == 401:
            raise KlaviyoAuthError(
                status,
                method,
                path,
                details,
                hint="The API key was not accepted: check that KLAVIYO_API_KEY holds a current private key of "
                f"this account with the {scope} scope.",
            )
        if status == 403:
            raise KlaviyoAuthError(
                status,
                method,
                path,
                details,
                hint=f"The API key lacks a scope this call needs: give the key the {scope} scope "
                "(read-only) in Klaviyo's API key settings.",
            )
        if status == 404:
            raise KlaviyoNotFoundError(
                status,
                method,
                path,
                details,
                hint="Check KLAVIYO_BASE_URL; the path is the one in Klaviyo's API reference.",
            )
        hint = ""
        if family == REPORTS and status == 400:
            hint = (
                "Report requests must cover at most 60 days and 100 segments, start on or after 2023-06-01 "
                "and no more than a year back."
            )
        raise KlaviyoAPIError(status, method, path, details, hint=hint)

    def _request(
        self, family: str, method: str, url: str, *, params: dict | None = None, json: dict | None = None
    ) -> dict[str, Any]:
        path = urlsplit(url).path or url
        pacer = self._pacers[family]
        headers = {"Content-Type": JSON_API_MEDIA_TYPE} if json is not None else None
        problem = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            if family == REPORTS:
                self.budget.take(path)
                pacer.wait(not_before_wall=self.budget.last_request_done())
            else:
                pacer.wait()
            self.stats.sent[family] += 1
            try:
                response = self._http.request(method, url, params=params, json=json, headers=headers)
            except httpx.TimeoutException as exc:
                problem = f"no answer within the timeout ({type(exc).__name__})"
                response = None
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
                response = None
            finally:
                pacer.done()
                if family == REPORTS:
                    self.budget.finished()

            if response is not None and response.status_code == 429:
                self.stats.throttled += 1
                wait = _retry_after_seconds(response)
                if wait is not None and wait > self.settings.max_retry_after_seconds:
                    until = time.time() + wait
                    if family == REPORTS:
                        self.budget.block_until(until)
                    raise KlaviyoQuotaExhausted(
                        path=path,
                        retry_after_seconds=wait,
                        retry_at=dt.datetime.fromtimestamp(until, dt.UTC),
                    )
                problem = "throttled (HTTP 429)"
                if attempt < self.settings.max_attempts:
                    delay = wait if wait is not None else self._backoff(attempt)
                    logger.warning("%s %s throttled; retrying in %.1f s", method, path, delay)
                    self.stats.retries += 1
                    self._sleep(delay)
                continue
            if response is not None and response.status_code in _RETRYABLE_STATUSES:
                problem = f"HTTP {response.status_code}: " + "; ".join(d.describe() for d in _error_details(response))
            elif response is not None and response.status_code >= 400:
                self._raise_for_client_error(family, method, path, response)
            elif response is not None:
                try:
                    body = response.json()
                except ValueError as exc:
                    raise KlaviyoResponseError(
                        f"{method} {path} answered HTTP {response.status_code} with a body that is not JSON"
                    ) from exc
                if not isinstance(body, dict):
                    raise KlaviyoResponseError(f"{method} {path} answered with JSON that is not an object")
                return body
            if attempt < self.settings.max_attempts:
                delay = self._backoff(attempt)
                logger.warning("%s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
                self.stats.retries += 1
                self._sleep(delay)
        raise KlaviyoServerError(method, path, self.settings.max_attempts, problem)

    # -- endpoints ------------------------------------------------------------------------------------

    def get_account(self) -> Account:
        """The account this key belongs to, with its IANA timezone (GET /api/accounts)."""
        body = self._request(ACCOUNTS, "GET", ACCOUNTS_PATH)
        try:
            record = body["data"][0]
            attributes = record["attributes"]
            timezone = attributes["timezone"]
            account_id = record["id"]
        except (KeyError, IndexError, TypeError) as exc:
            raise KlaviyoResponseError("GET /api/accounts returned no account with an id and a timezone") from exc
        if not isinstance(timezone, str) or not timezone:
            raise KlaviyoResponseError("GET /api/accounts returned an account without a timezone")
        contact = attributes.get("contact_information") or {}
        return Account(id=str(account_id), timezone=timezone, name=contact.get("organization_name"))

    def iter_segment_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Every page of GET /api/segments, following `links.next` exactly as given until it is absent."""
        url: str | None = SEGMENTS_PATH
        params: dict | None = {"page[size]": SEGMENTS_PAGE_SIZE}
        seen: set[str] = set()
        while url:
            body = self._request(SEGMENTS, "GET", url, params=params)
            data = body.get("data")
            if not isinstance(data, list):
                raise KlaviyoResponseError("GET /api/segments returned a page without a `data` array")
            yield data
            links = body.get("links") or {}
            url = links.get("next") if isinstance(links, dict) else None
            params = None  # the next link already carries the cursor and the page size
            if url:
                if url in seen:
                    raise KlaviyoResponseError("GET /api/segments returned a `links.next` it had returned before")
                seen.add(url)

    def list_segments(self) -> list[dict[str, Any]]:
        """All segments as JSON:API resources (id, attributes incl. the whole `definition`)."""
        segments: dict[str, dict] = {}
        for page in self.iter_segment_pages():
            for resource in page:
                if not isinstance(resource, dict) or "id" not in resource:
                    raise KlaviyoResponseError("GET /api/segments returned an item without an id")
                segments[resource["id"]] = resource  # a page served twice must not duplicate a segment
        return list(segments.values())

    def _report_body(
        self,
        report_type: str,
        segment_ids: tuple[str, ...],
        window: DayWindow,
        timezone: str,
        statistics: tuple[str, ...],
        interval: str | None,
    ) -> dict:
        attributes: dict[str, Any] = {
            "statistics": list(statistics),
            "timeframe": custom_timeframe(window, timezone),
            "filter": series_filter(segment_ids),
        }
        if interval:
            attributes["interval"] = interval
        return {"data": {"type": report_type, "attributes": attributes}}

    def query_segment_series(
        self,
        segment_ids: tuple[str, ...],
        window: DayWindow,
        timezone: str,
        statistics: tuple[str, ...] = SERIES_STATISTICS,
    ) -> dict[str, Any]:
        """One daily segment-series report (POST /api/segment-series-reports); the decoded body."""
        body = self._report_body("segment-series-report", segment_ids, window, timezone, statistics, "daily")
        return self._request(REPORTS, "POST", SEGMENT_SERIES_PATH, json=body)

    def query_segment_values(
        self,
        segment_ids: tuple[str, ...],
        window: DayWindow,
        timezone: str,
        statistics: tuple[str, ...] = SERIES_STATISTICS,
    ) -> dict[str, Any]:
        """One segment-values report over the window (POST /api/segment-values-reports); the decoded body."""
        body = self._report_body("segment-values-report", segment_ids, window, timezone, statistics, None)
        return self._request(REPORTS, "POST", SEGMENT_VALUES_PATH, json=body)
