"""Rows of `klaviyo.segment_tags`: each segment's tags as GET /api/segments?include=tags returned them.

One row per segment with its tags as a JSON list of {"id", "name"} (an empty list when it has none), merged
on (account_id, segment_id). A row per segment rather than per (segment, tag) means a tag taken off a
segment, or a segment left with no tags, replaces the old row instead of lingering; staging unnests it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ..klaviyo.errors import KlaviyoResponseError

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
    """One row per segment resource, its tags named from the document's `included` tag resources."""
    rows = []
    for resource in resources:
        segment_id = str(resource["id"])
        relationship = ((resource.get("relationships") or {}).get("tags") or {}).get("data")
        if not isinstance(relationship, list):
            raise KlaviyoResponseError(
                f"segment {segment_id}: relationships.tags.data is missing although include=tags was asked"
            )
        tags = []
        for entry in relationship:
            tag_id = str(entry.get("id")) if isinstance(entry, dict) else None
            if tag_id not in tag_names:
                raise KlaviyoResponseError(f"segment {segment_id}: tag {tag_id} is not among the included tags")
            tags.append({"id": tag_id, "name": tag_names[tag_id]})
        tags.sort(key=lambda tag: (tag["name"] or "", tag["id"]))
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
