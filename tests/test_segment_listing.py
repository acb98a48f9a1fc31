"""The segments listing kept compact, and its Arrow tables loaded where dict rows were loaded before.

A warehouse made before the listing went to dlt as Arrow tables has the segment tables as dlt made them from
dicts (with NOT NULL `_dlt_load_id` and `_dlt_id` columns); the next run loads into them.
"""

import datetime as dt
import json
import logging

import dlt
import duckdb
import pytest

from segment_pipeline.klaviyo import Account
from segment_pipeline.klaviyo.errors import KlaviyoResponseError
from segment_pipeline.klaviyo.segment_listing import SegmentListing, definition_hash
from segment_pipeline.sources.segment_tags import SEGMENT_TAG_COLUMNS
from segment_pipeline.sources.segments import SEGMENT_COLUMNS, klaviyo_segments_source
from segment_pipeline.tables import SEGMENT_TAGS_TABLE, SEGMENTS_TABLE
from segment_pipeline.warehouse import dlt_pipeline, stored_segments

ACCOUNT = Account(id="A1", timezone="UTC")
# keys in an order that is not sorted: the stored text keeps Klaviyo's order
DEFINITION = {"condition_groups": [{"conditions": [{"type": "profile-region", "region": "eu", "in_region": True}]}]}
T0 = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


def resource(segment_id: str, name: str, tags: list[str] | None = None) -> dict:
    attributes = {
        "name": name,
        "definition": DEFINITION,
        "created": "2024-01-01T00:00:00Z",
        "updated": "2024-01-02T00:00:00Z",
        "is_active": True,
        "is_processing": False,
        "is_starred": False,
    }
    found = {"type": "segment", "id": segment_id, "attributes": attributes}
    if tags is not None:
        found["relationships"] = {"tags": {"data": [{"type": "tag", "id": tag} for tag in tags]}}
    return found


def test_a_listing_keeps_each_segment_once_with_its_definition_as_sent():
    listing = SegmentListing.of([resource("s1", "old name"), resource("s2", "B"), resource("s1", "EU")], {"t1": "VIP"})
    assert len(listing) == 2 and listing.ids == {"s1", "s2"}
    first = next(iter(listing))
    assert first.name == "EU"  # a page served twice: the last listing of a segment wins
    assert first.definition == json.dumps(DEFINITION, separators=(",", ":"))
    reordered = {"condition_groups": [{"conditions": [{"in_region": True, "region": "eu", "type": "profile-region"}]}]}
    assert first.definition_hash == definition_hash(reordered)
    assert first.created == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert listing.without_tag_data() == 2  # listed with include=tags, but neither carried the tags' data


@pytest.mark.parametrize(
    ("attributes", "says"),
    [
        ({"is_active": "yes"}, "is_active='yes' is not true or false"),
        ({"updated": "yesterday"}, "updated='yesterday' is not a date-time"),
        ({"name": 7}, "name=7 is not text"),
    ],
)
def test_a_segment_with_a_mistyped_attribute_is_refused_as_its_page_arrives(attributes, says):
    listing = SegmentListing(with_tags=False)
    found = resource("s1", "EU")
    found["attributes"].update(attributes)
    with pytest.raises(KlaviyoResponseError, match=says):
        listing.add(found)


def test_a_tag_missing_from_the_included_tags_refuses_the_listing():
    listing = SegmentListing.of([resource("s1", "EU", ["t1", "t2"])], {"t1": "VIP"})
    with pytest.raises(KlaviyoResponseError, match="lists tags t2 that are not among the included tags"):
        listing.check_tags()


@dlt.source(name="klaviyo_segments", max_table_nesting=0)
def dict_rows_source(loaded_at: dt.datetime):
    """The segments and tags as the source loaded them before: dict rows, JSON as Python objects."""
    row = {"account_id": ACCOUNT.id, "id": "s1", "name": "EU", "definition": DEFINITION, "is_deleted": False}

    @dlt.resource(
        name=SEGMENTS_TABLE, primary_key=["account_id", "id"], write_disposition="merge", columns=SEGMENT_COLUMNS
    )
    def segments():
        yield [row | {"_loaded_at": loaded_at}, row | {"id": "gone", "name": "Gone", "_loaded_at": loaded_at}]

    @dlt.resource(
        name=SEGMENT_TAGS_TABLE,
        primary_key=["account_id", "segment_id"],
        write_disposition="merge",
        columns=SEGMENT_TAG_COLUMNS,
    )
    def segment_tags():
        tags = [{"id": "t0", "name": "Old"}]
        yield {"account_id": ACCOUNT.id, "segment_id": "s1", "tags": tags, "tag_count": 1, "_loaded_at": loaded_at}

    return segments, segment_tags


def test_arrow_rows_load_into_tables_first_made_from_dicts_and_say_nothing(tmp_path, caplog):
    warehouse = tmp_path / "warehouse.duckdb"
    dlt_pipeline("klaviyo_segments", warehouse, tmp_path / "dlt").run(dict_rows_source(T0))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        nullable = connection.execute(
            "select is_nullable from information_schema.columns "
            "where table_name = 'segments' and column_name = '_dlt_id'"
        ).fetchone()
    assert nullable == ("NO",)  # what the next load has to fill

    previous = stored_segments(warehouse, ACCOUNT.id)
    # stored as dlt wrote it from the dict, which is the text the listing now sends for it
    stored_text = SegmentListing.of([resource("s1", "EU")]).__iter__().__next__().definition
    assert {row["id"]: row["definition"] for row in previous} == {"s1": stored_text, "gone": stored_text}
    listing = SegmentListing.of([resource("s1", "EU renamed", ["t1"])], {"t1": "VIP"})
    caplog.set_level(logging.INFO, logger="dlt")
    pipeline = dlt_pipeline("klaviyo_segments", warehouse, tmp_path / "dlt", dlt_columns=True)
    pipeline.run(klaviyo_segments_source(ACCOUNT, listing, previous, T0 + dt.timedelta(days=1)))
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        segments = connection.execute(
            "select id, name, is_deleted, definition -> '$.condition_groups[0].conditions[0]' ->> 'region', "
            "_dlt_load_id is not null and _dlt_id is not null from klaviyo.segments order by id"
        ).fetchall()
        tags = connection.execute(
            "select segment_id, tags ->> '$[0].name', tag_count from klaviyo.segment_tags"
        ).fetchall()
        types = connection.execute(
            "select table_name, data_type from information_schema.columns "
            "where column_name in ('definition', 'tags') and table_schema = 'klaviyo' order by 1"
        ).fetchall()
    assert segments == [("gone", "Gone", True, "eu", True), ("s1", "EU renamed", False, "eu", True)]
    assert tags == [("s1", "VIP", 1)]
    assert types == [("segment_definitions", "JSON"), ("segment_tags", "JSON"), ("segments", "JSON")]
