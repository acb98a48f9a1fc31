"""What a page of `GET /api/v1/segments` may hold, checked and bounded before anything uses it.

A page that does not match the platform's document (not JSON, no `data` list, no `pagination`, a segment
without an id, a count that is not a whole number, a timestamp that is not one) raises
SegmentsApiResponseError naming the page and the field: a listing with such a page is never stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .errors import SegmentsApiResponseError
from .options import MAX_PAGES, MAX_SEGMENTS

MAX_ID_CHARS = 200
MAX_NAME_CHARS = 2_000
MAX_DESCRIPTION_CHARS = 20_000
MAX_FILTERS = 500
MAX_FILTERS_JSON_CHARS = 200_000
# a segment cannot hold more members than this; a larger count is a broken answer
MAX_COUNT = 10**12
MATCH_TYPES = ("all", "any")
# timestamps before this, or more than a day ahead of this machine's clock, are not believable
EARLIEST_MOMENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
CLOCK_SKEW = dt.timedelta(days=1)
_SHOWN = 60


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@dataclass(frozen=True)
class Segment:
    """One segment as listed, every value checked."""

    id: str
    name: str | None
    description: str | None
    match_type: str
    # the canonical JSON of the filters (keys sorted, no spaces): the same conditions give the same text
    filters: str
    definition_hash: str
    cached_count: int | None
    last_counted_at: dt.datetime | None
    created_at: dt.datetime | None


@dataclass(frozen=True)
class Pagination:
    page: int
    limit: int
    total: int
    total_pages: int


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_hash(match_type: str, filters: Any) -> str:
    """sha256 of the canonical JSON of {matchType, filters}: what a definition version is keyed on."""
    text = canonical_json({"filters": filters, "matchType": match_type})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_page(text: bytes, page: int, now: dt.datetime) -> tuple[list[Segment], Pagination]:
    """A page's segments and pagination, or SegmentsApiResponseError saying what is wrong with it."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise SegmentsApiResponseError(f"page {page} of the segments listing is not JSON ({len(text)} bytes)") from None
    if not isinstance(body, dict):
        raise SegmentsApiResponseError(f"page {page} of the segments listing is not a JSON object")
    data, pagination = body.get("data"), body.get("pagination")
    if not isinstance(data, list):
        raise SegmentsApiResponseError(f"page {page} of the segments listing has no `data` list")
    if not isinstance(pagination, dict):
        raise SegmentsApiResponseError(f"page {page} of the segments listing has no `pagination` object")
    return [_segment(item, page, now) for item in data], _pagination(pagination, page)


def _pagination(raw: dict[str, Any], page: int) -> Pagination:
    bounds = {"page": (1, MAX_PAGES), "limit": (1, 100), "total": (0, MAX_SEGMENTS), "totalPages": (0, MAX_PAGES)}
    values = {}
    for name, (least, most) in bounds.items():
        value = raw.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most:
            raise SegmentsApiResponseError(
                f"page {page} of the segments listing: pagination.{name}={_shown(value)} is not a whole number "
                f"from {least} to {most}"
            )
        values[name] = value
    return Pagination(values["page"], values["limit"], values["total"], values["totalPages"])


def _text(item: dict[str, Any], name: str, most: int, where: str, required: bool = False) -> str | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > most:
        raise SegmentsApiResponseError(f"{where}: {name}={_shown(value)} is not a text of at most {most} characters")
    return value


def _moment(item: dict[str, Any], name: str, where: str, now: dt.datetime) -> dt.datetime | None:
    value = item.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SegmentsApiResponseError(f"{where}: {name}={_shown(value)} is not an ISO 8601 date-time") from None
    # the document's timestamps are UTC (`Z`); one without an offset is read as UTC too
    moment = (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    if not EARLIEST_MOMENT <= moment <= now + CLOCK_SKEW:
        raise SegmentsApiResponseError(
            f"{where}: {name}={_shown(value)} is before {EARLIEST_MOMENT:%Y} or more than a day ahead of this "
            "machine's clock"
        )
    return moment


def _segment(item: Any, page: int, now: dt.datetime) -> Segment:
    if not isinstance(item, dict):
        raise SegmentsApiResponseError(f"page {page} of the segments listing holds {_shown(item)}, not a segment")
    segment_id = _text(item, "id", MAX_ID_CHARS, f"a segment on page {page}", required=True)
    assert segment_id is not None
    if any(not character.isprintable() for character in segment_id):
        raise SegmentsApiResponseError(f"a segment on page {page}: its id {_shown(segment_id)} has control characters")
    where = f"segment {segment_id} (page {page})"
    match_type = item.get("matchType")
    if match_type not in MATCH_TYPES:
        raise SegmentsApiResponseError(f"{where}: matchType={_shown(match_type)} is neither 'all' nor 'any'")
    filters = item.get("filters")
    if not isinstance(filters, list) or len(filters) > MAX_FILTERS or not all(isinstance(f, dict) for f in filters):
        raise SegmentsApiResponseError(f"{where}: filters is not a list of at most {MAX_FILTERS} conditions")
    filters_json = canonical_json(filters)
    if len(filters_json) > MAX_FILTERS_JSON_CHARS:
        raise SegmentsApiResponseError(f"{where}: its filters take more than {MAX_FILTERS_JSON_CHARS} characters")
    count = item.get("cachedCount")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT):
        raise SegmentsApiResponseError(f"{where}: cachedCount={_shown(count)} is not a whole number from 0 to 10^12")
    counted_at = _moment(item, "lastCountedAt", where, now)
    if (count is None) != (counted_at is None):
        raise SegmentsApiResponseError(f"{where}: it has a cachedCount or a lastCountedAt, not both")
    return Segment(
        id=segment_id,
        name=_text(item, "name", MAX_NAME_CHARS, where),
        description=_text(item, "description", MAX_DESCRIPTION_CHARS, where),
        match_type=match_type,
        filters=filters_json,
        definition_hash=definition_hash(match_type, filters),
        cached_count=count,
        last_counted_at=counted_at,
        created_at=_moment(item, "createdAt", where, now),
    )
