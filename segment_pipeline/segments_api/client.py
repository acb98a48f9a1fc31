"""A small client for the Segments API platform's `GET /api/v1/segments`, on httpx. No Dagster, no dlt.

- **Pages.** `list_segments` asks for page 1, 2, ... with `limit=100` (the document's maximum) up to the
  `totalPages` page 1 announced, and returns the listing only when it adds up: every page names the page asked
  for and the same total, each page but the last is full, no id comes twice, and the ids number `total`. A
  listing that changed while it was read is read again from page 1 (at most `LISTING_ATTEMPTS` times); one
  that never adds up, or a malformed page, raises SegmentsApiResponseError and nothing is returned.
- **The key** (`Authorization: Bearer <key>`: the document names no scheme, so this is assumed) is sent to the
  configured base URL's host only: requests are built from it, redirects are never followed, and plain http
  is refused except to a loopback address. It is never logged or put in a message.
- **Retries.** 429 and 5xx answers, timeouts and dropped connections are retried up to `max_attempts` times,
  after the answer's `Retry-After` (seconds or an HTTP date) or an exponential backoff; a `Retry-After`
  longer than `max_retry_after_seconds` fails the run at once, saying when to try again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .. import __version__
from ..klaviyo.origins import origin_of
from ..klaviyo.responses import retry_after_seconds
from ..klaviyo.settings import ApiKey
from .errors import SegmentsApiAuthError, SegmentsApiResponseError, SegmentsApiUnavailableError
from .options import MAX_PAGE_SIZE, MAX_PAGES, MAX_RETRY_AFTER_ENV, SegmentsApiOptions
from .records import Pagination, Segment, parse_page

logger = logging.getLogger(__name__)

SEGMENTS_PATH = "/api/v1/segments"
USER_AGENT = f"segment-pipeline/{__version__}"
# a page of 100 segments is tens of kilobytes; an answer this large is not a page
MAX_BODY_BYTES = 50 * 1024 * 1024
# a listing that changed while it was read (a segment created or deleted meanwhile) is read again this often
LISTING_ATTEMPTS = 3
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_BACKOFF_CAP_SECONDS = 60.0


class _BearerAuth(httpx.Auth):
    """Adds the key to each request without ever showing it."""

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(key=********)"


class _ListingChanged(Exception):
    """The pages did not add up to one listing; reading again from page 1 may."""


@dataclass
class Listing:
    """A complete listing: every segment, and what it took."""

    segments: list[Segment]
    pages: int
    requests: int
    fetched_at: dt.datetime


class SegmentsApiClient:
    """Reads one workspace's segments.

    Args:
        options: The base URL and the retry settings.
        api_key: The workspace's key.
        key_variable: The variable the key came from, named (never the key) when the platform refuses it.
        sleep: How to wait (tests may pass a recorder).
        log: Where waits and retries are logged.
    """

    def __init__(
        self,
        options: SegmentsApiOptions,
        api_key: ApiKey,
        key_variable: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.options = options
        self.key_variable = key_variable
        self.log = log or logger
        self._sleep = sleep
        self.requests = 0
        base_url = options.required_base_url()
        self.origin = origin_of(base_url)
        self._http = httpx.Client(
            base_url=base_url,
            auth=_BearerAuth(api_key),
            timeout=httpx.Timeout(options.timeout_seconds, connect=min(10.0, options.timeout_seconds)),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            # a redirect could carry the key to another host
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SegmentsApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_segments(self) -> Listing:
        """Every segment of the workspace, from a listing that adds up (see the module's docstring)."""
        for attempt in range(1, LISTING_ATTEMPTS + 1):
            try:
                return self._listing()
            except _ListingChanged as exc:
                if attempt == LISTING_ATTEMPTS:
                    raise SegmentsApiResponseError(
                        f"the segments listing did not add up in {LISTING_ATTEMPTS} readings ({exc}); nothing was "
                        "stored. If segments are being created or deleted right now, run again later."
                    ) from None
                self.log.warning("the segments listing changed while it was read (%s); reading it again", exc)
        raise AssertionError("unreachable")

    def _listing(self) -> Listing:
        segments: list[Segment] = []
        seen: set[str] = set()
        first: Pagination | None = None
        page = 1
        while True:
            now = dt.datetime.now(dt.UTC)
            items, pagination = parse_page(self._get(page), page, now)
            if pagination.page != page or pagination.limit != MAX_PAGE_SIZE:
                raise SegmentsApiResponseError(
                    f"asked for page {page} of {MAX_PAGE_SIZE}, the answer says page {pagination.page} of "
                    f"{pagination.limit}; nothing was stored"
                )
            if first is None:
                first = pagination
                expected_pages = -(-pagination.total // MAX_PAGE_SIZE)
                # an empty listing may say 0 pages or 1
                if pagination.total_pages != expected_pages and (pagination.total, pagination.total_pages) != (0, 1):
                    raise SegmentsApiResponseError(
                        f"page 1 says {pagination.total} segments fill {pagination.total_pages} pages of "
                        f"{MAX_PAGE_SIZE}, which cannot be; nothing was stored"
                    )
            elif (pagination.total, pagination.total_pages) != (first.total, first.total_pages):
                raise _ListingChanged(f"page 1 counted {first.total} segments, page {page} {pagination.total}")
            last_page = max(first.total_pages, 1)
            expected = min(MAX_PAGE_SIZE, first.total - (page - 1) * MAX_PAGE_SIZE)
            if len(items) != max(expected, 0):
                raise _ListingChanged(f"page {page} holds {len(items)} segments instead of {max(expected, 0)}")
            for item in items:
                if item.id in seen:
                    raise _ListingChanged(f"segment {item.id} is on two pages")
                seen.add(item.id)
            segments.extend(items)
            if page >= last_page:
                break
            page += 1
            if page > MAX_PAGES:  # bounded by the pagination checks too; a guard against a runaway loop
                raise SegmentsApiResponseError(f"the listing runs past {MAX_PAGES} pages; nothing was stored")
        return Listing(segments, page, self.requests, dt.datetime.now(dt.UTC))

    def _get(self, page: int) -> bytes:
        """One page's body, after the retries it needed; refusals and exhausted retries raise."""
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            self.requests += 1
            try:
                response = self._http.get(SEGMENTS_PATH, params={"page": page, "limit": MAX_PAGE_SIZE})
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem, wait = f"{type(exc).__name__}", None
            else:
                if response.status_code == 200:
                    if len(response.content) > MAX_BODY_BYTES:
                        raise SegmentsApiResponseError(
                            f"page {page} of the segments listing is larger than {MAX_BODY_BYTES} bytes"
                        )
                    return response.content
                self._refuse(response, page)
                problem = f"HTTP {response.status_code}"
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == attempts:
                raise SegmentsApiUnavailableError(
                    f"page {page} of the segments listing failed {attempts} times (last: {problem}); nothing was "
                    "stored. The platform may be down or throttling: run again later."
                )
            if wait is None:
                wait = min(_BACKOFF_CAP_SECONDS, self.options.backoff_base_seconds * 2 ** (attempt - 1))
            elif wait > self.options.max_retry_after_seconds:
                raise SegmentsApiUnavailableError(
                    f"the Segments API asked to wait {wait:.0f} s before page {page} ({problem}), longer than "
                    f"{MAX_RETRY_AFTER_ENV}={self.options.max_retry_after_seconds:g}; nothing was stored. Run again "
                    f"after {dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait):%Y-%m-%d %H:%M} UTC."
                )
            self.log.info(
                "page %d: %s, trying again in %.1f s (attempt %d of %d)", page, problem, wait, attempt, attempts
            )
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _refuse(self, response: httpx.Response, page: int) -> None:
        """Raise for an answer no retry can fix; return for one worth retrying."""
        status = response.status_code
        if status in _RETRYABLE:
            return
        if status in (401, 403):
            raise SegmentsApiAuthError(
                f"the Segments API refused the key in {self.key_variable} (HTTP {status}): it is wrong, revoked or "
                f"lacks read access to segments. Create a key in the platform's dashboard and export it as "
                f"{self.key_variable} where Dagster and its runs run; nothing was stored."
            )
        if 300 <= status < 400:
            raise SegmentsApiResponseError(
                f"page {page}: the Segments API answered with a redirect (HTTP {status}), which is never followed "
                "(it could carry the key elsewhere); check SEGMENTS_API_BASE_URL"
            )
        raise SegmentsApiResponseError(
            f"page {page} of the segments listing was refused with HTTP {status} "
            f"({_message(response)}); nothing was stored"
        )


def _message(response: httpx.Response) -> str:
    """The platform's own error message, cut short."""
    try:
        body = response.json()
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("message")
    except (ValueError, AttributeError, KeyError, TypeError):
        message = None
    text = str(message) if message else response.reason_phrase
    return text[:200]
