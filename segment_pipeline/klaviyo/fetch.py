"""One planned series request, sent and turned into rows that can be trusted, or into an error.

Klaviyo leaves a segment out of a report's `results` when it cannot report on it, which is what happens to a
segment deleted after the segments listing the plan was made from. A missing segment is therefore looked up
(GET /api/segments/{id}): a 404 means it was deleted, and the response's rows for the other segments are kept
while the deleted ids are reported; a missing segment that still exists makes the response incomplete, and
none of it is kept. Missing days are never explained away.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

from .client import Account, KlaviyoClient
from .errors import IncompleteSeriesResponse
from .planner import SeriesRequest
from .series import SERIES_ROW_SCHEMA, series_rows


@dataclass(frozen=True)
class SeriesResponse:
    """The rows of one series request, and the requested segments Klaviyo no longer has.

    Attributes:
        table: rows of SERIES_ROW_SCHEMA, one per (segment, day) for every requested segment that exists.
        deleted_segment_ids: requested segments left out of the response because they were deleted meanwhile.
    """

    table: pa.Table
    deleted_segment_ids: tuple[str, ...] = ()


def fetch_series(
    client: KlaviyoClient, request: SeriesRequest, account: Account, *, today: dt.date | None = None
) -> SeriesResponse:
    """Send one planned series request and return its rows, whole or not at all.

    Args:
        client: the Klaviyo client (paced, retrying, counting the report in the account's ledger).
        request: one request of `plan_series_requests`.
        account: the account (its id goes on every row, its timezone defines the days).
        today: the account-local today; days after it are not expected (default: now in the account's zone).

    Returns:
        The rows and the ids of requested segments that were deleted since they were listed.

    Raises:
        IncompleteSeriesResponse: days are missing, or missing segments still exist; nothing is kept.
        KlaviyoResponseError: the response is malformed in another way; nothing is kept.
        KlaviyoError: the request itself failed (quota, 4xx, 5xx after retries).
    """
    body = client.query_segment_series(request.segment_ids, request.window, account.timezone)
    parse = dict(account_id=account.id, timezone=account.timezone, window=request.window, today=today)
    try:
        return SeriesResponse(series_rows(body, requested_ids=request.segment_ids, **parse))
    except IncompleteSeriesResponse as incomplete:
        if incomplete.missing_days:
            raise
        missing = incomplete.missing_segment_ids
        still_there = tuple(sid for sid in missing if client.segment_exists(sid))
        if still_there:
            raise IncompleteSeriesResponse(
                missing_days=(), missing_segment_ids=still_there, window=incomplete.window
            ) from incomplete
    kept = tuple(sid for sid in request.segment_ids if sid not in missing)
    # every segment deleted: nothing to read (and Klaviyo may then leave out date_times as well)
    table = series_rows(body, requested_ids=kept, **parse) if kept else SERIES_ROW_SCHEMA.empty_table()
    return SeriesResponse(table, deleted_segment_ids=missing)
