"""Rows of `klaviyo.segment_tags`: each segment's tags as GET /api/segments?include=tags returned them.

One row per segment with its tags as a JSON list of {"id", "name"} (an empty list when it has none), merged
on (account_id, segment_id). A row per segment rather than per (segment, tag) means a tag taken off a
segment, or a segment left with no tags, replaces the old row instead of lingering; staging unnests it. A
segment listed without its tags' `data` keeps its stored row.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from ..klaviyo.errors import KlaviyoResponseError
from ..klaviyo.segment_listing import SegmentListing
from .arrow_columns import arrow_schema

SEGMENT_TAG_COLUMNS = {
    "account_id": {"data_type": "text", "nullable": False},
    "segment_id": {"data_type": "text", "nullable": False},
    "tags": {"data_type": "json"},
    "tag_count": {"data_type": "bigint"},
    "_loaded_at": {"data_type": "timestamp"},
}


def segment_tags_table(listing: SegmentListing, account_id: str, loaded_at: dt.datetime) -> pa.Table:
    """One row per listed segment whose tags were listed, named from the listing's `included` tags.

    A segment whose tags relationship came without `data` (the spec allows only `links`) gets no row: its
    tags are unknown this run, so the stored row, if any, is kept as it was.
    """
    names = listing.tag_names or {}
    columns: dict[str, list] = {name: [] for name in SEGMENT_TAG_COLUMNS}
    for segment in listing:
        if segment.tag_ids is None:
            continue
        unknown = [tag_id for tag_id in segment.tag_ids if tag_id not in names]
        if unknown:
            raise KlaviyoResponseError(f"segment {segment.id}: tag {unknown[0]} is not among the included tags")
        tags = sorted(
            ({"id": tag_id, "name": names[tag_id]} for tag_id in segment.tag_ids),
            key=lambda tag: (tag["name"] or "", tag["id"]),
        )
        columns["account_id"].append(account_id)
        columns["segment_id"].append(segment.id)
        columns["tags"].append(json.dumps(tags, separators=(",", ":"), ensure_ascii=False))
        columns["tag_count"].append(len(tags))
        columns["_loaded_at"].append(loaded_at)
    return pa.table(columns, schema=arrow_schema(SEGMENT_TAG_COLUMNS))
