"""A small Klaviyo REST client on httpx for the segment and segment-report endpoints.

It knows nothing of Dagster or dlt. It pins the API revision, speaks JSON:API, paces each endpoint family
under Klaviyo's limits, counts report requests in the account's ledger, retries what is worth retrying (a 429
after its `Retry-After`, or one whole steady window when it has none; 5xx, timeouts and dropped connections with
exponential backoff and full jitter, through tenacity), fails fast when the daily quota is spent, and turns 4xx
answers into typed errors that carry Klaviyo's own `detail` and `source`. The API key goes into the
Authorization header and nowhere else: not into logs, exception messages or reprs.

A request goes through four steps, one method each: `_send` (pacing, the report budget, the HTTP call),
`_classify` (the answer: a body, a typed error, or a failure worth retrying), `_retry_wait` (how long to wait
before the next attempt), and `_request`, which lets tenacity run them until success or the last attempt.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import tenacity

from .. import __version__
from .errors import (
    KLAVIYO_QUOTA,
    KlaviyoAPIError,
    KlaviyoAuthError,
    KlaviyoForeignHostError,
    KlaviyoNotFoundError,
    KlaviyoQuotaExhausted,
    KlaviyoResponseError,
    KlaviyoServerError,
)
from .ledger import ReportBudget, ReportLedgers
from .limits import (
    ACCOUNTS_PATH,
    ACCOUNTS_RATE_LIMIT,
    API_REVISION,
    JSON_API_MEDIA_TYPE,
    MAX_DAYS_PER_DAILY_SERIES,
    MAX_HISTORY_DAYS,
    MAX_SEGMENT_IDS_PER_REPORT,
    REPORTING_DATA_FLOOR,
    REPORTS_RATE_LIMIT,
    SCOPE_ACCOUNTS,
    SCOPE_SEGMENTS,
    SCOPE_TAGS,
    SEGMENT_SERIES_PATH,
    SEGMENT_VALUES_PATH,
    SEGMENTS_INCLUDE_RATE_LIMIT,
    SEGMENTS_INCLUDE_TAGS,
    SEGMENTS_PAGE_SIZE,
    SEGMENTS_PATH,
    SEGMENTS_RATE_LIMIT,
    SERIES_STATISTICS,
)
from .listing import included_tag_names, next_link, segment_resources
from .origins import is_loopback, origin_of
from .pacing import Pacer, Window, burst_windows, min_interval, until_text
from .planner import DayWindow, custom_timeframe, series_filter
from .responses import bounded_retry_after, error_details
from .segment_listing import SegmentListing
from .settings import ApiKey, KlaviyoSettings

logger = logging.getLogger(__name__)

USER_AGENT = f"segment-pipeline/{__version__}"

# endpoint families: each has its own limits, pacer and scope
SEGMENTS = "segments"
ACCOUNTS = "accounts"
REPORTS = "reports"
# GET /api/segments with include=tags: the segments limits plus the stricter include limit, and tags:read
SEGMENTS_WITH_TAGS = "segments_with_tags"
_SCOPES = {
    SEGMENTS: SCOPE_SEGMENTS,
    REPORTS: SCOPE_SEGMENTS,
    ACCOUNTS: SCOPE_ACCOUNTS,
    SEGMENTS_WITH_TAGS: f"{SCOPE_TAGS} (with {SCOPE_SEGMENTS})",
}

# Statuses that say "try again later" rather than "your request is wrong".
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504, 524})
_BACKOFF_CAP_SECONDS = 30.0
_REPORT_400_HINT = (
    f"Report requests must cover at most {MAX_DAYS_PER_DAILY_SERIES} days and {MAX_SEGMENT_IDS_PER_REPORT} "
    f"segments, start on or after {REPORTING_DATA_FLOOR.isoformat()} and reach no more than {MAX_HISTORY_DAYS} "
    "days back."
)


class _Transient(Exception):
    """An attempt failed in a way worth retrying; `wait` is how long the server asked us to wait, if it did."""

    def __init__(self, problem: str, wait: float | None = None) -> None:
        super().__init__(problem)
        self.wait = wait


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


class KlaviyoClient:
    """Reads accounts, segments and segment reports from Klaviyo.

    Args:
        settings: base URL, key, pacing and retry settings; `KlaviyoSettings.from_env()` reads them.
        ledgers: the report ledgers, one per account; by default files in `settings.ledger_dir` (in memory
            without one).
        transport: an httpx transport, for tests that need one.
        sleep: how to wait; tests may pass a recorder.
        log: where waits, retries and bounded values are logged (a Dagster run passes `context.log`).

    The report budget is the account's: the client learns the account from GET /api/accounts (`get_account()`)
    and, if a report request or `budget` comes first, asks for it then.
    """

    def __init__(
        self,
        settings: KlaviyoSettings,
        *,
        ledgers: ReportLedgers | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.settings = settings
        self.log = log or logger
        self.ledgers = ledgers or ReportLedgers(
            settings.report_daily_limit,
            settings.ledger_dir,
            window_seconds=settings.report_budget_window_seconds,
            log=self.log,
        )
        self.account: Account | None = None
        self.stats = RequestStats()
        # full jitter keeps several clients that failed together from retrying together
        self._backoff = tenacity.wait_random_exponential(
            multiplier=settings.backoff_base_seconds, max=_BACKOFF_CAP_SECONDS
        )
        self._sleep = self._counting_sleep(sleep)

        def pacer(windows: tuple[Window, ...], what: str) -> Pacer:
            return Pacer(windows=windows, sleep=self._sleep, what=what, log=self.log)

        # the GET families use their whole burst allowance (a listing of 1,000 segments takes about a second
        # of pacing); reports keep one per interval, the spacing the ledger carries across processes
        self._pacers = {
            SEGMENTS: pacer(burst_windows(SEGMENTS_RATE_LIMIT), "Klaviyo's segments rate limit"),
            ACCOUNTS: pacer(burst_windows(ACCOUNTS_RATE_LIMIT), "Klaviyo's accounts rate limit"),
            SEGMENTS_WITH_TAGS: pacer(burst_windows(SEGMENTS_INCLUDE_RATE_LIMIT), "Klaviyo's limit for include=tags"),
            REPORTS: pacer(
                ((1, min_interval(REPORTS_RATE_LIMIT, settings.report_rate_per_minute)),),
                f"report requests at {settings.report_rate_per_minute:g} a minute (KLAVIYO_REPORT_RATE_PER_MINUTE)",
            ),
        }
        # the only address the key may go to (settings checked it: https, or http to a loopback address)
        self.origin = origin_of(settings.base_url)
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
            # httpx's default, made explicit: a redirect is an answer (see _classify), never followed with the key
            follow_redirects=False,
            # a loopback address is this machine: never through HTTP_PROXY, which would see the key in clear text
            trust_env=not is_loopback(self.origin.host),
        )

    def _counting_sleep(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        def counted(seconds: float) -> None:
            self.stats.seconds_waited += seconds
            sleep(seconds)

        return counted

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self.settings.base_url!r})"

    @property
    def budget(self) -> ReportBudget:
        """The report budget of this key's account (asks GET /api/accounts first if the account is not known)."""
        account = self.account or self.get_account()
        return self.ledgers.for_account(account.id)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KlaviyoClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------------

    def _raise_for_client_error(self, family: str, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        details = error_details(response)
        scope = _SCOPES[family]
        if status == 401:
            raise KlaviyoAuthError(
                status,
                method,
                path,
                details,
                hint=f"The API key was not accepted: check that {self.settings.api_key_variable} holds a current "
                f"private key of this account with the {scope} scope.",
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
        hint = _REPORT_400_HINT if family == REPORTS and status == 400 else ""
        raise KlaviyoAPIError(status, method, path, details, hint=hint)

    def _send(
        self, family: str, method: str, url: str, path: str, params: dict | None, json: dict | None
    ) -> httpx.Response:
        """One attempt: wait for the pacer (and, for reports, count it in the budget), then send it."""
        headers = {"Content-Type": JSON_API_MEDIA_TYPE} if json is not None else None
        request = self._http.build_request(method, url, params=params, json=json, headers=headers)
        self._check_destination(method, path, request.url)
        pacer = self._pacers[family]
        budget = self.budget if family == REPORTS else None
        if budget is not None:
            budget.take(path)
            pacer.wait(not_before_wall=budget.last_request_done())
        else:
            pacer.wait()
        self.stats.sent[family] += 1
        try:
            return self._http.send(request)
        except httpx.TimeoutException as exc:
            raise _Transient(f"no answer within the timeout ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from exc
        finally:
            pacer.done()
            if budget is not None:
                budget.finished()

    def _check_destination(self, method: str, path: str, url: httpx.URL) -> None:
        """Refuse, before the key is added, a request to another scheme, host or port than the base URL's."""
        destination = origin_of(url)
        if destination != self.origin:
            raise KlaviyoForeignHostError(
                f"refused to send {method} {path} to {destination or 'an address that is not http(s)'}: the API key "
                f"goes only to KLAVIYO_BASE_URL's {self.origin}. Nothing was sent"
            )

    def _redirected(self, method: str, path: str, response: httpx.Response) -> KlaviyoResponseError:
        location = response.headers.get("Location", "")
        try:
            target = origin_of(response.request.url.join(location)) if location else None
        except httpx.InvalidURL:
            target = None
        where = f"to {target}" if target else "without a usable Location"
        elsewhere = "" if target in (None, self.origin) else f"; nothing was sent to {target.host}"
        return KlaviyoResponseError(
            f"{method} {path} answered HTTP {response.status_code}, a redirect {where}. Redirects are never "
            f"followed, so the API key goes only to KLAVIYO_BASE_URL ({self.origin}){elsewhere}. Set "
            "KLAVIYO_BASE_URL to the address the API answers at (Klaviyo's is https://a.klaviyo.com)"
        )

    def _classify(self, family: str, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        """The decoded body of a success; a typed error for a refusal; `_Transient` for what may pass."""
        status = response.status_code
        if 300 <= status < 400:
            raise self._redirected(method, path, response)
        if status == 429:
            self._throttled(family, path, response)
        if status in _RETRYABLE_STATUSES:
            raise _Transient(f"HTTP {status}: " + "; ".join(d.describe() for d in error_details(response)))
        if status >= 400:
            self._raise_for_client_error(family, method, path, response)
        try:
            body = response.json()
        except ValueError as exc:
            raise KlaviyoResponseError(f"{method} {path} answered HTTP {status} with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise KlaviyoResponseError(f"{method} {path} answered with JSON that is not an object")
        return body

    def _throttled(self, family: str, path: str, response: httpx.Response) -> None:
        """A 429: wait what it asks (one whole steady window when it does not say), or fail fast if that is long."""
        self.stats.throttled += 1
        now = time.time()
        # Klaviyo's windows are fixed: whatever window was full, one whole steady window later it is not; and
        # no wait is longer than the report quota window, so the ledger never holds a time past it
        wait, note = bounded_retry_after(
            response.headers.get("Retry-After"),
            without_advice=self.settings.steady_window_seconds,
            longest=self.settings.report_budget_window_seconds,
            now=now,
        )
        if note:
            self.log.warning("%s answered 429: %s", path, note)
        if wait <= self.settings.max_retry_after_seconds:
            raise _Transient("throttled (HTTP 429)", wait=wait)
        until = now + wait
        if family == REPORTS:
            self.budget.block_until(until, now=now)
        raise KlaviyoQuotaExhausted(
            path=path,
            retry_after_seconds=wait,
            retry_at=dt.datetime.fromtimestamp(until, dt.UTC),
            kind=KLAVIYO_QUOTA,
            account_id=self.account.id if self.account else None,
            blocked_at=dt.datetime.fromtimestamp(now, dt.UTC),
        )

    def _retry_wait(self, state: tenacity.RetryCallState) -> float:
        """The server's demand when it made one (a 429), else exponential backoff with full jitter."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Transient) and failure.wait is not None:
            return failure.wait
        return self._backoff(state)

    def _request(
        self, family: str, method: str, url: str, *, params: dict | None = None, json: dict | None = None
    ) -> dict[str, Any]:
        path = urlsplit(url).path or url

        def attempt() -> dict[str, Any]:
            return self._classify(family, method, path, self._send(family, method, url, path, params, json))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.stats.retries += 1
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "%s %s failed (%s); retrying in %.1f s, at %s",
                method,
                path,
                state.outcome.exception(),
                wait,
                until_text(wait),
            )

        def gave_up(state: tenacity.RetryCallState) -> None:
            last = state.outcome.exception()
            raise KlaviyoServerError(method, path, state.attempt_number, str(last)) from last

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.max_attempts),
            wait=self._retry_wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=before_sleep,
            retry_error_callback=gave_up,
        )
        return retrying(attempt)

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
        # from now on report requests count in this account's ledger
        self.account = Account(id=str(account_id), timezone=timezone, name=contact.get("organization_name"))
        return self.account

    def segment_exists(self, segment_id: str) -> bool:
        """Whether the segment still exists (GET /api/segments/{id}: 200 yes, 404 no, anything else raises)."""
        try:
            self._request(SEGMENTS, "GET", f"{SEGMENTS_PATH}/{quote(segment_id, safe='')}")
        except KlaviyoNotFoundError:
            return False
        return True

    def iter_segment_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Every page of GET /api/segments, following `links.next` as given (on the configured host only)."""
        for body, _ in self._segment_documents(SEGMENTS, {}):
            yield body["data"]

    def _segment_documents(self, family: str, extra_params: dict) -> Iterator[tuple[dict[str, Any], int]]:
        """Each page of the listing, checked (see listing.py), with its number.

        A page that breaks the spec, or whose `links.next` names another host, raises before the next page
        is asked for: a caller that collects the whole listing before using it never uses part of one.
        """
        url: str | None = SEGMENTS_PATH
        params: dict | None = {"page[size]": SEGMENTS_PAGE_SIZE, **extra_params}
        seen: set[str] = set()
        page = 0
        while url:
            page += 1
            body = self._request(family, "GET", url, params=params)
            segment_resources(body, page)
            yield body, page
            url = next_link(body, page, self.origin)
            params = None  # the next link already carries the cursor and the page size
            if url:
                if url in seen:
                    raise KlaviyoResponseError("GET /api/segments returned a `links.next` it had returned before")
                seen.add(url)

    def list_segments(self) -> list[dict[str, Any]]:
        """All segments as JSON:API resources (id, attributes incl. the whole `definition`), from a whole listing."""
        segments: dict[str, dict] = {}
        for body, _ in self._segment_documents(SEGMENTS, {}):
            for resource in body["data"]:
                segments[resource["id"]] = resource  # a page served twice must not duplicate a segment
        return list(segments.values())

    def list_segments_with_tags(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """All segments with their tags (GET /api/segments?include=tags): the resources and tag id -> name.

        Each resource's `relationships.tags.data` lists its tag ids; a resource whose tags relationship has
        no `data` (the spec allows only `links`) has unknown tags (`listing.tag_ids` gives None). Needs the
        tags:read scope: without it Klaviyo answers 403 and this raises KlaviyoAuthError naming the scope.
        Paced under the stricter limit of requests with `include`.
        """
        segments: dict[str, dict] = {}
        tag_names: dict[str, str] = {}
        for body, page in self._segment_documents(SEGMENTS_WITH_TAGS, {"include": SEGMENTS_INCLUDE_TAGS}):
            for resource in body["data"]:
                segments[resource["id"]] = resource
            tag_names.update(included_tag_names(body, page))
        SegmentListing.of(segments.values(), tag_names).check_tags()
        return list(segments.values()), tag_names

    def segment_listing(self, *, with_tags: bool) -> SegmentListing:
        """The whole listing, each resource reduced as its page arrives (segment_listing.py says why).

        `with_tags` lists with include=tags, as `list_segments_with_tags` (same scope, same pacing, same
        checks); without it the plain listing at the endpoint's own limits.
        """
        listing = SegmentListing(with_tags=with_tags)
        family, params = (SEGMENTS_WITH_TAGS, {"include": SEGMENTS_INCLUDE_TAGS}) if with_tags else (SEGMENTS, {})
        for body, page in self._segment_documents(family, params):
            for resource in body["data"]:
                listing.add(resource)
            if with_tags:
                listing.add_tag_names(included_tag_names(body, page))
        listing.check_tags()
        return listing

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
