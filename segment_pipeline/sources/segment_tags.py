"""Rows of `klaviyo.segment_tags`: each segment's tags as GET /api/segments?include=tags returned them.

One row per segment with its tags as a JSON list of {"id", "name"} (an empty list when it has none), merged
on (account_id, segment_id). A row per segment rather than per (segment, tag) means a tag taken off a
segment, or a segment left with no tags, replaces the old row instead of lingering; staging unnests it. A
segment listed without its tags' `data` keeps its stored row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ..klaviyo.errors import KlaviyoResponseError
from ..klaviyo.listing import tag_ids

SEGMENT_TAG_COLUMNS = {
    "account_id": {"data_type": "text", "nullable": False},
    "segment_id": {"data_type": "text", "nullable": False},
    "tags": {"data_type": "json"},
    "tag_count": {"data_type": "bigint"},
    "_loaded_at": {"data_type": "timestamp"},
}


def segment_tag_rows(
    resources: Iterable[dict], tag_names: dict[str, str], account_id: str, loaded_at: dt.datetime
) -> list[dict]:
    """One row per segment resource whose tags were listed, named from the document's `included` tags.

    A segment whose tags relationship came without `data` (the spec allows only `links`) gets no row: its
    tags are unknown this run, so the stored row, if any, is kept as it was.
    """
    rows = []
    for resource in resources:
        segment_id = str(resource["id"])
        listed = tag_ids(resource)
        if listed is None:
            continue
        unknown = [tag_id for tag_id in listed if tag_id not in tag_names]
        if unknown:
            raise KlaviyoResponseError(f"segment {segment_id}: tag {unknown[0]} is not among the included tags")
        tags = sorted(
            ({"id": tag_id, "name": tag_names[tag_id]} for tag_id in listed),
            key=lambda tag: (tag["name"] or "", tag["id"]),
        )
        rows.append(
            {
                "account_id": account_id,
                "segment_id": segment_id,
                "tags": tags,
                "tag_count": len(tags),
                "_loaded_at": loaded_at,
            }
        )
    return rows
