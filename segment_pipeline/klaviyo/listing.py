"""Reading the pages of GET /api/segments: what the OpenAPI document allows is accepted, anything else refused.

A page is refused (KlaviyoResponseError) when something the listing relies on is not what the spec says:
`data` not an array, an item that is not a `segment` resource with a string id, a relationship whose `data`
is not an array of `{type, id}`, an `included` that is not an array, or a `links.next` that is not a full
http(s) URL. A `links.next` on another scheme, host or port than KLAVIYO_BASE_URL is refused too
(KlaviyoForeignHostError), before anything is sent there: the API key goes with every request.

What the spec leaves optional is tolerated: `links` (a page without it is the last), `links.next` absent or
null (the last page), `relationships`, a `tags` relationship without `data` (Klaviyo may give only its
`links`: that segment's tags are then unknown, not empty), `included`, `meta`, and nullable attributes.
"""

from __future__ import annotations

from typing import Any

from .errors import KlaviyoForeignHostError, KlaviyoResponseError, shown
from .limits import SEGMENTS_PATH
from .origins import Origin, origin_of

SEGMENT_TYPE = "segment"
TAG_TYPE = "tag"


def _malformed(page: int, problem: str) -> KlaviyoResponseError:
    return KlaviyoResponseError(
        f"GET {SEGMENTS_PATH} page {page}: {problem}. The listing was abandoned and none of it is used (no "
        "segment is marked deleted); run again, and report it if it persists"
    )


def _linkage(relationship: Any, name: str, segment_id: str, page: int) -> list[str] | None:
    """The ids a to-many relationship lists; `None` when it carries no `data` (only `links`, as the spec allows)."""
    if relationship is None:
        return None
    if not isinstance(relationship, dict):
        raise _malformed(page, f"segment {segment_id}: relationships.{name} is not an object")
    data = relationship.get("data")
    if data is None:
        return None
    if not isinstance(data, list):
        raise _malformed(page, f"segment {segment_id}: relationships.{name}.data is not an array")
    ids = []
    for entry in data:
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(entry_id, str) or not entry_id or not isinstance(entry.get("type"), str):
            raise _malformed(page, f"segment {segment_id}: relationships.{name}.data holds {shown(entry)}")
        ids.append(entry_id)
    return ids


def segment_resources(body: dict[str, Any], page: int) -> list[dict[str, Any]]:
    """The segment resources of one page, each checked against the spec's shape."""
    data = body.get("data")
    if not isinstance(data, list):
        raise _malformed(page, "the page has no `data` array")
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise _malformed(page, f"an item has no string id ({shown(item)})")
        segment_id = item["id"]
        if item.get("type") != SEGMENT_TYPE:
            raise _malformed(page, f"item {shown(segment_id)} is a {shown(item.get('type'))}, not a segment")
        if not isinstance(item.get("attributes") or {}, dict):
            raise _malformed(page, f"segment {segment_id}: attributes is not an object")
        relationships = item.get("relationships")
        if relationships is None:
            continue
        if not isinstance(relationships, dict):
            raise _malformed(page, f"segment {segment_id}: relationships is not an object")
        for name, relationship in relationships.items():
            _linkage(relationship, name, segment_id, page)
    return data


def tag_ids(resource: dict[str, Any]) -> list[str] | None:
    """A checked segment resource's tag ids; `None` when its tags relationship has no `data` (tags unknown)."""
    relationship = (resource.get("relationships") or {}).get("tags")
    return _linkage(relationship, "tags", resource["id"], 0)


def segments_without_tag_data(resources: list[dict[str, Any]]) -> int:
    """How many checked segment resources came without their tags (a tags relationship with no `data`)."""
    return sum(1 for resource in resources if tag_ids(resource) is None)


def included_tag_names(body: dict[str, Any], page: int) -> dict[str, str | None]:
    """Tag id -> name from a page's `included` tag resources (other included types are skipped)."""
    included = body.get("included")
    if included is None:
        return {}
    if not isinstance(included, list):
        raise _malformed(page, "`included` is not an array")
    names: dict[str, str | None] = {}
    for entry in included:
        if not isinstance(entry, dict) or entry.get("type") != TAG_TYPE:
            continue
        tag_id, attributes = entry.get("id"), entry.get("attributes")
        name = attributes.get("name") if isinstance(attributes, dict) else None
        if not isinstance(tag_id, str) or not tag_id or not (name is None or isinstance(name, str)):
            raise _malformed(page, f"an included tag is not shaped like one ({shown(entry)})")
        names[tag_id] = name
    return names


def next_link(body: dict[str, Any], page: int, base: Origin) -> str | None:
    """The next page's URL, only on the configured origin; `None` on the last page.

    Raises:
        KlaviyoForeignHostError: `links.next` names another scheme, host or port than `base`.
        KlaviyoResponseError: `links` or `links.next` is not shaped as the spec says.
    """
    links = body.get("links")
    if links is None:
        return None
    if not isinstance(links, dict):
        raise _malformed(page, "`links` is not an object")
    link = links.get("next")
    if link is None:
        return None
    origin = origin_of(link) if isinstance(link, str) else None
    if origin is None:
        raise _malformed(page, f"links.next {shown(link)} is not a full http(s) URL")
    if origin != base:
        raise KlaviyoForeignHostError(
            f"GET {SEGMENTS_PATH} page {page} names its next page on {origin}, not on KLAVIYO_BASE_URL's {base}. "
            f"Nothing was sent to {origin.host} (the API key goes only to {base}); the listing was abandoned and "
            "none of it is used, so no segment is marked deleted. If KLAVIYO_BASE_URL is a proxy, make it "
            "rewrite links to its own address; if it is Klaviyo, report it: its pages link only to its own host"
        )
    return link
