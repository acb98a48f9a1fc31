"""GET /api/segments and GET /api/segments/{id}: JSON:API segment resources, filters, sorting and cursor pages.

Cursors are opaque to clients but are keyset positions here (the sort key of the last item shown), so a
segment deleted or renamed between two page requests never makes the listing skip or repeat others.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from .account import Segment, SimulatedAccount
from .error_documents import ApiError, invalid
from .filters import Condition, FilterSyntaxError, parse_datetime_value, parse_filter
from .query import Query, check_known_parameters, csv_values
from .rules import SCOPE_TAGS, SEGMENTS_PAGE_SIZE, SEGMENTS_PATH

SEGMENT_FIELDS = (
    "created",
    "definition",
    "definition.condition_groups",
    "id",
    "is_active",
    "is_processing",
    "is_starred",
    "name",
    "updated",
)
FLOW_FIELDS = ("archived", "created", "id", "name", "status", "trigger_type", "updated")
TAG_FIELDS = ("id", "name")
INCLUDES = ("flow-triggers", "tags")
SORTS = ("created", "-created", "id", "-id", "name", "-name", "updated", "-updated")

LIST_PARAMETERS = (
    "fields[flow]",
    "fields[segment]",
    "fields[tag]",
    "filter",
    "include",
    "page[cursor]",
    "page[size]",
    "sort",
)
GET_PARAMETERS = ("additional-fields[segment]", "fields[flow]", "fields[segment]", "fields[tag]", "include")

# Which operators each field accepts in `filter` (from the spec's operation description).
FILTERABLE = {
    "id": ("equals", "any"),
    "name": ("equals", "any"),
    "created": ("greater-than",),
    "updated": ("greater-than",),
    "is_active": ("equals", "any"),
    "is_starred": ("equals",),
}


def _timestamp(value: dt.datetime | None) -> str | None:
    # Klaviyo writes timestamps in UTC with an explicit +00:00 offset
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")


def segment_resource(
    segment: Segment,
    base_url: str,
    *,
    fields: Sequence[str] | None = None,
    include: Sequence[str] = (),
    profile_count: int | None = None,
) -> dict[str, Any]:
    """Render a segment as a JSON:API resource object.

    Args:
        segment: The segment.
        base_url: Scheme and host for links, e.g. "http://127.0.0.1:8765".
        fields: Sparse fieldset from `fields[segment]`; `None` for every attribute.
        include: Relationship names from `include`; their `data` is listed (the segment's tags; no flows).
        profile_count: Add `profile_count` (from `additional-fields[segment]`).

    Returns:
        The resource object.
    """
    attributes: dict[str, Any] = {
        "name": segment.name,
        "definition": json.loads(json.dumps(segment.definition)),
        "created": _timestamp(segment.created),
        "updated": _timestamp(segment.updated),
        "is_active": segment.is_active,
        "is_processing": segment.is_processing,
        "is_starred": segment.is_starred,
    }
    if profile_count is not None:
        attributes["profile_count"] = profile_count
    if fields is not None:
        wanted = {f.split(".", 1)[0] for f in fields}
        attributes = {name: value for name, value in attributes.items() if name in wanted}
    self_url = f"{base_url}{SEGMENTS_PATH}/{segment.id}"
    relationships: dict[str, Any] = {}
    for name in ("profiles", "tags", "flow-triggers"):
        relationship: dict[str, Any] = {
            "links": {"self": f"{self_url}/relationships/{name}", "related": f"{self_url}/{name}"}
        }
        if name in include:
            tags = segment.tags if name == "tags" else ()
            relationship["data"] = [{"type": "tag", "id": tag.id} for tag in tags]
        relationships[name] = relationship
    return {
        "type": "segment",
        "id": segment.id,
        "attributes": attributes,
        "relationships": relationships,
        "links": {"self": self_url},
    }


def _included(segments: Sequence[Segment], include: Sequence[str], base_url: str) -> list[dict[str, Any]]:
    # each included tag once per document, as JSON:API compound documents require
    tags = {tag.id: tag for segment in segments for tag in segment.tags} if "tags" in include else {}
    return [
        {
            "type": "tag",
            "id": tag.id,
            "attributes": {"name": tag.name},
            "links": {"self": f"{base_url}/api/tags/{tag.id}"},
        }
        for tag in tags.values()
    ]


def _check_include_scopes(account: SimulatedAccount, include: Sequence[str]) -> None:
    # tags are their own resource: including them needs the tags:read scope on top of segments:read
    if "tags" in include and SCOPE_TAGS in account.config.missing_scopes:
        raise ApiError(
            403,
            f"This API key is missing the '{SCOPE_TAGS}' scope, which include=tags requires. "
            "Add the scope to the private key.",
        )


def _checked_values(query: Query, name: str, allowed: Sequence[str]) -> list[str] | None:
    if name not in query:
        return None
    values = csv_values(query[name])
    for value in values:
        if value not in allowed:
            raise invalid(f"'{value}' is not a valid value for {name}. Allowed: {', '.join(allowed)}.", parameter=name)
    return values


def _sparse_fields(query: Query, *, extra: Sequence[str] = ()) -> tuple[list[str] | None, list[str]]:
    fields = _checked_values(query, "fields[segment]", SEGMENT_FIELDS + tuple(extra))
    _checked_values(query, "fields[flow]", FLOW_FIELDS)
    _checked_values(query, "fields[tag]", TAG_FIELDS)
    include = _checked_values(query, "include", INCLUDES) or []
    return fields, include


def _matches(segment: Segment, condition: Condition) -> bool:
    field, operator, value = condition.field, condition.operator, condition.value
    if field in ("created", "updated"):
        actual = segment.created if field == "created" else segment.updated
        return actual > parse_datetime_value(value)
    actual = {"id": segment.id, "name": segment.name, "is_active": segment.is_active, "is_starred": segment.is_starred}[
        field
    ]
    if operator == "any" or isinstance(value, list):
        return actual in value
    return actual == value


def _conditions(text: str) -> list[Condition]:
    try:
        conditions = parse_filter(text)
    except FilterSyntaxError as exc:
        raise invalid(f"Invalid filter: {exc}.", parameter="filter") from None
    for condition in conditions:
        allowed = FILTERABLE.get(condition.field)
        if allowed is None:
            raise invalid(
                f"'{condition.field}' is not a filterable field for segments. Allowed: {', '.join(FILTERABLE)}.",
                parameter="filter",
            )
        if condition.operator not in allowed:
            raise invalid(
                f"Operator '{condition.operator}' is not allowed for '{condition.field}'. "
                f"Allowed: {', '.join(allowed)}.",
                parameter="filter",
            )
        value = condition.value
        if condition.field in ("created", "updated"):
            try:
                parse_datetime_value(value)
            except FilterSyntaxError as exc:
                raise invalid(f"Invalid filter: {exc}.", parameter="filter") from None
        elif condition.field in ("is_active", "is_starred"):
            values = value if isinstance(value, list) else [value]
            if (
                not values
                or not all(isinstance(v, bool) for v in values)
                or (condition.operator == "equals" and isinstance(value, list))
            ):
                raise invalid(f"'{condition.field}' must be compared with true or false.", parameter="filter")
        else:
            values = value if isinstance(value, list) else [value]
            if condition.operator == "any" and not isinstance(value, list):
                raise invalid(f'any() needs a list, e.g. any({condition.field},["a","b"]).', parameter="filter")
            if not all(isinstance(v, str) for v in values):
                raise invalid(f"'{condition.field}' must be compared with quoted strings.", parameter="filter")
    return conditions


def _sort_key(sort: str) -> Callable[[Segment], list[Any]]:
    field = sort.lstrip("-")
    if field in ("created", "updated"):
        return lambda s: [getattr(s, field).timestamp(), s.id]
    if field == "name":
        return lambda s: [s.name, s.id]
    return lambda s: [s.id]


def _encode_cursor(sort: str, direction: str, key: list[Any]) -> str:
    raw = json.dumps({"s": sort, "d": direction, "k": key}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[str, list[Any]]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw.decode("utf-8"))
        direction, key = decoded["d"], decoded["k"]
        cursor_sort = decoded["s"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise invalid("Invalid page cursor.", parameter="page[cursor]") from None
    if direction not in ("next", "prev") or not isinstance(key, list) or cursor_sort != sort:
        raise invalid("Invalid page cursor (it belongs to a different listing or sort).", parameter="page[cursor]")
    return direction, key


def _page_size(query: Query) -> int:
    if "page[size]" not in query:
        return SEGMENTS_PAGE_SIZE
    raw = query["page[size]"]
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"page[size] must be an integer; got '{raw}'.", parameter="page[size]") from None
    if not 1 <= size <= SEGMENTS_PAGE_SIZE:
        raise invalid(f"page[size] must be between 1 and {SEGMENTS_PAGE_SIZE}; got {size}.", parameter="page[size]")
    return size


def list_segments(account: SimulatedAccount, query: Query, base_url: str, self_url: str) -> dict[str, Any]:
    """Answer GET /api/segments.

    Args:
        account: The simulated account.
        query: The decoded query parameters.
        base_url: Scheme and host for links.
        self_url: The full URL that was requested (for `links.self`).

    Returns:
        The collection document.

    Raises:
        ApiError: 400 for unknown parameters, bad values, filters, sorts, page sizes or cursors.
    """
    check_known_parameters(query, LIST_PARAMETERS)
    fields, include = _sparse_fields(query)
    _check_include_scopes(account, include)
    size = _page_size(query)
    sort = query.get("sort", "")
    if sort and sort not in SORTS:
        raise invalid(f"'{sort}' is not a valid sort. Allowed: {', '.join(SORTS)}.", parameter="sort")
    conditions = _conditions(query["filter"]) if "filter" in query else []

    key = _sort_key(sort or "created")
    items = [s for s in account.segments if all(_matches(s, c) for c in conditions)]
    descending = sort.startswith("-")
    items.sort(key=key, reverse=descending)
    keys = [key(s) for s in items]

    def after(candidate: list[Any], anchor: list[Any]) -> bool:
        return candidate < anchor if descending else candidate > anchor

    start = 0
    if "page[cursor]" in query:
        direction, anchor = _decode_cursor(query["page[cursor]"], sort)
        if direction == "next":
            start = next((i for i, k in enumerate(keys) if after(k, anchor)), len(items))
        else:
            end = next((i for i, k in enumerate(keys) if k == anchor or after(k, anchor)), len(items))
            start = max(0, end - size)
    page = items[start : start + size]

    def link(cursor: str) -> str:
        params = [(name, value) for name, value in query.items() if name not in ("page[cursor]", "page[size]")]
        params += [("page[size]", str(size)), ("page[cursor]", cursor)]
        return f"{base_url}{SEGMENTS_PATH}?{urlencode(params)}"

    links: dict[str, str] = {"self": self_url}
    if page and start + size < len(items):
        links["next"] = link(_encode_cursor(sort, "next", keys[start + len(page) - 1]))
    if page and start > 0:
        links["prev"] = link(_encode_cursor(sort, "prev", keys[start]))
    document: dict[str, Any] = {
        "data": [segment_resource(s, base_url, fields=fields, include=include) for s in page],
        "links": links,
    }
    if include:
        document["included"] = _included(page, include, base_url)
    return document


def get_segment(
    account: SimulatedAccount, segment_id: str, query: Query, base_url: str, self_url: str
) -> dict[str, Any]:
    """Answer GET /api/segments/{id}.

    Args:
        account: The simulated account.
        segment_id: The id from the path.
        query: The decoded query parameters.
        base_url: Scheme and host for links.
        self_url: The full URL that was requested.

    Returns:
        The single-resource document.

    Raises:
        ApiError: 404 for an unknown or deleted segment, 400 for bad parameters.
    """
    check_known_parameters(query, GET_PARAMETERS)
    fields, include = _sparse_fields(query, extra=("profile_count",))
    _check_include_scopes(account, include)
    additional = _checked_values(query, "additional-fields[segment]", ("profile_count",)) or []
    if not account.has_segment(segment_id):
        raise ApiError(404, f"A segment with id {segment_id} does not exist.")
    segment = account.segment(segment_id)
    profile_count = None
    if "profile_count" in additional:
        today = account.today()
        rows = account.series_rows(segment_id, today, today)
        profile_count = rows[0][0] if rows else 0
    document: dict[str, Any] = {
        "data": segment_resource(segment, base_url, fields=fields, include=include, profile_count=profile_count),
        "links": {"self": self_url},
    }
    if include:
        document["included"] = _included([segment], include, base_url)
    return document
