"""A whole listing of an account's segments, kept compact: what a load needs of each resource, and no more.

A segment resource decoded from JSON is a tree of small Python objects: at 10,000 segments the listing took
about 70 MB that way, held until the load ended. Each resource is instead reduced as its page arrives to one
`ListedSegment`: its attributes checked and typed, its definition as compact JSON text (in Klaviyo's key
order, as stored) with its fingerprint, and its tag ids. The page's objects are then freed.

A page served twice does not duplicate a segment (the last one listed wins). Only a whole listing is used:
the client raises before returning a partial one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import KlaviyoResponseError
from .listing import tag_ids


def definition_hash(definition: Any) -> str:
    """A stable fingerprint of a definition: key order and whitespace do not change it."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def definition_text(definition: Any) -> str:
    """A definition as stored: compact JSON in the order Klaviyo sent it."""
    return json.dumps(definition, separators=(",", ":"), ensure_ascii=False)


def parse_timestamp(value: Any, field: str, segment_id: str) -> dt.datetime | None:
    """An ISO 8601 attribute as an aware datetime (UTC when it names no zone); None stays None."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise KlaviyoResponseError(f"segment {segment_id}: {field}={value!r} is not a date-time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _flag(attributes: dict, name: str, segment_id: str) -> bool | None:
    value = attributes.get(name)
    if value is not None and not isinstance(value, bool):
        raise KlaviyoResponseError(f"segment {segment_id}: {name}={value!r} is not true or false")
    return value


@dataclass(frozen=True, slots=True)
class ListedSegment:
    """One segment as listed: its attributes checked and typed, its definition as JSON text."""

    id: str
    name: str | None
    definition: str | None
    definition_hash: str | None
    created: dt.datetime | None
    updated: dt.datetime | None
    is_active: bool | None
    is_processing: bool | None
    is_starred: bool | None
    # None: listed without its tags' `data` (tags unknown), or listed without include=tags
    tag_ids: tuple[str, ...] | None

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> ListedSegment:
        """Reduce a checked JSON:API segment resource (see listing.py)."""
        segment_id = str(resource["id"])
        attributes = resource.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise KlaviyoResponseError(f"segment {segment_id}: attributes is not an object")
        definition = attributes.get("definition")
        name = attributes.get("name")
        if name is not None and not isinstance(name, str):
            raise KlaviyoResponseError(f"segment {segment_id}: name={name!r} is not text")
        tags = tag_ids(resource)
        return cls(
            id=segment_id,
            name=name,
            definition=definition_text(definition) if definition is not None else None,
            definition_hash=definition_hash(definition) if definition is not None else None,
            created=parse_timestamp(attributes.get("created"), "created", segment_id),
            updated=parse_timestamp(attributes.get("updated"), "updated", segment_id),
            is_active=_flag(attributes, "is_active", segment_id),
            is_processing=_flag(attributes, "is_processing", segment_id),
            is_starred=_flag(attributes, "is_starred", segment_id),
            tag_ids=tuple(tags) if tags is not None else None,
        )


class SegmentListing:
    """Every segment of one listing, and the tag id -> name of its `included` tags (None: not asked for)."""

    def __init__(self, *, with_tags: bool) -> None:
        self._segments: dict[str, ListedSegment] = {}
        self.tag_names: dict[str, str | None] | None = {} if with_tags else None

    @classmethod
    def of(cls, resources: Iterable[dict[str, Any]], tag_names: dict[str, str | None] | None = None) -> SegmentListing:
        """A listing of resources already collected (the client's `list_segments*`), with their tag names."""
        listing = cls(with_tags=tag_names is not None)
        for resource in resources:
            listing.add(resource)
        if tag_names is not None:
            listing.add_tag_names(tag_names)
        return listing

    def add(self, resource: dict[str, Any]) -> None:
        segment = ListedSegment.from_resource(resource)
        self._segments[segment.id] = segment

    def add_tag_names(self, names: dict[str, str | None]) -> None:
        if self.tag_names is None:
            raise ValueError("tag names given to a listing made without include=tags")
        self.tag_names.update(names)

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[ListedSegment]:
        return iter(self._segments.values())

    @property
    def ids(self) -> set[str]:
        return set(self._segments)

    @property
    def tags_listed(self) -> bool:
        return self.tag_names is not None

    def without_tag_data(self) -> int:
        """Segments listed with include=tags whose tags relationship came without `data` (0 without tags)."""
        return sum(1 for segment in self if segment.tag_ids is None) if self.tags_listed else 0

    def inactive(self) -> int:
        return sum(1 for segment in self if segment.is_active is False)

    def check_tags(self) -> None:
        """Every tag a segment links to is among the listing's included tags, or the listing is refused."""
        if self.tag_names is None:
            return
        for segment in self:
            unknown = sorted(set(segment.tag_ids or ()) - set(self.tag_names))
            if unknown:
                raise KlaviyoResponseError(
                    f"GET /api/segments: segment {segment.id} lists tags {', '.join(unknown)} that are not "
                    "among the included tags. The listing was abandoned and none of it is used; run again, and "
                    "report it if it persists"
                )
