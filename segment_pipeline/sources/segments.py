"""dlt source `klaviyo_segments`: the account, every segment, and every version of each definition.

- `accounts`: one row per account (id, timezone, Klaviyo's organization name, and `account_name`, the
  account's short name in this deployment's accounts file), merged on account_id, so a renamed account
  shows its new name after its next load.
- `segments`: one row per segment, merged on (account_id, id) and refreshed every run so renames,
  definition edits and deletions show. A segment the API no longer returns stays, flagged `is_deleted`, but
  only from a complete listing (the caller collects every page first) and, when the listing lacks more than
  half of the live segments, only once a run confirms it (`plan_deletions`).
  `processing_seen_at` keeps the last load that saw it `is_processing` (the planner's finality reads it).
- `segment_definitions`: one row per observed state of a segment's definition, keyed by
  (account_id, segment_id, segment_updated, definition_hash) and inserted only once, so the first time we
  saw it is never overwritten. Keying on Klaviyo's `updated` as well as the hash keeps a return to an
  earlier definition (A -> B -> A) as a row of its own; dbt turns consecutive rows with the same hash (a
  rename also bumps `updated`) into one version.
- `segment_tags`: each live segment's tags (see segment_tags.py), only when the tags were fetched.

The three segment tables are handed to dlt as Arrow tables built from the compact listing
(`klaviyo/segment_listing.py`), definitions as JSON text: at 10,000 segments, dicts holding the parsed
definitions cost dlt's normalizer about 130 MB and two seconds; the Arrow tables pass through it untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import dlt
import pyarrow as pa

from ..config import DEFAULT_ACCOUNT_NAME
from ..klaviyo import Account
from ..klaviyo.segment_listing import SegmentListing
from ..tables import ACCOUNTS_TABLE, SEGMENT_DEFINITIONS_TABLE, SEGMENT_TAGS_TABLE, SEGMENTS_TABLE
from .arrow_columns import arrow_schema
from .segment_tags import SEGMENT_TAG_COLUMNS, segment_tags_table

# dlt's default for rows given as dicts on DuckDB is one INSERT ... VALUES statement per file: with 10,000
# definitions DuckDB parses a statement of tens of megabytes and the load took 750 MB. Parquet files load in a
# few (Arrow tables are written as parquet whatever this says; it is kept for the resources' declarations).
LOADER_FILE_FORMAT = "parquet"

# A type the API sends that does not match these fails the load instead of adding a variant column.
FROZEN_TYPES = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
# The tables given as Arrow: built to their declared schema (`arrow_schema`) from values already checked
# (`ListedSegment`), so no API value can bring a new type, and a frozen data_type would only refuse what
# Arrow adds to every column, an explicit `nullable`, which tables first loaded from dicts stored without.
ARROW_CONTRACT = {"tables": "evolve", "columns": "freeze", "data_type": "evolve"}

ACCOUNT_COLUMNS = {
    "account_id": {"data_type": "text", "nullable": False},
    "timezone": {"data_type": "text"},
    "name": {"data_type": "text"},
    # the account's short name in the accounts file (`default` without one)
    "account_name": {"data_type": "text"},
    "_loaded_at": {"data_type": "timestamp"},
}
SEGMENT_COLUMNS = {
    "account_id": {"data_type": "text", "nullable": False},
    "id": {"data_type": "text", "nullable": False},
    "name": {"data_type": "text"},
    "definition": {"data_type": "json"},
    "definition_hash": {"data_type": "text"},
    "created": {"data_type": "timestamp"},
    "updated": {"data_type": "timestamp"},
    "is_active": {"data_type": "bool"},
    "is_processing": {"data_type": "bool"},
    # the last load whose listing showed is_processing: the segment's numbers settle some time after it
    "processing_seen_at": {"data_type": "timestamp"},
    "is_starred": {"data_type": "bool"},
    "is_deleted": {"data_type": "bool"},
    "deleted_seen_at": {"data_type": "timestamp"},
    "_loaded_at": {"data_type": "timestamp"},
}
DEFINITION_COLUMNS = {
    "account_id": {"data_type": "text", "nullable": False},
    "segment_id": {"data_type": "text", "nullable": False},
    "definition_hash": {"data_type": "text", "nullable": False},
    "definition": {"data_type": "json"},
    # part of the key: Klaviyo's `updated`, or the load time when Klaviyo sends none (never NULL)
    "segment_updated": {"data_type": "timestamp"},
    "first_seen_at": {"data_type": "timestamp"},
}
# One row per observed definition state. Warehouses made before `segment_updated` joined the key need no
# migration: their rows stay valid under the wider key (see the README's upgrade note).
DEFINITION_KEY = ["account_id", "segment_id", "segment_updated", "definition_hash"]


def deleted_rows(previous: Iterable[dict], current_ids: set[str], loaded_at: dt.datetime) -> list[dict]:
    """Rows stored earlier whose segment the API no longer returns, flagged deleted (the rest kept as was)."""
    rows = []
    for row in previous:
        if row["id"] in current_ids:
            continue
        kept = dict(row)
        if not kept.get("is_deleted"):
            kept["is_deleted"] = True
            kept["deleted_seen_at"] = loaded_at
        kept["_loaded_at"] = loaded_at
        rows.append(kept)
    return rows


def segments_table(listing: SegmentListing, account_id: str, previous: list[dict], loaded_at: dt.datetime) -> pa.Table:
    """Every listed segment, then the stored ones the listing lacks (flagged deleted), as one Arrow table.

    `processing_seen_at` is this load for a segment processing now, else what was stored for it before.
    """
    seen_before = {row["id"]: row.get("processing_seen_at") for row in previous}
    columns: dict[str, list] = {name: [] for name in SEGMENT_COLUMNS}
    for segment in listing:
        values = {
            "account_id": account_id,
            "id": segment.id,
            "name": segment.name,
            "definition": segment.definition,
            "definition_hash": segment.definition_hash,
            "created": segment.created,
            "updated": segment.updated,
            "is_active": segment.is_active,
            "is_processing": segment.is_processing,
            "processing_seen_at": loaded_at if segment.is_processing else seen_before.get(segment.id),
            "is_starred": segment.is_starred,
            "is_deleted": False,
            "deleted_seen_at": None,
            "_loaded_at": loaded_at,
        }
        for name, column in columns.items():
            column.append(values[name])
    for row in deleted_rows(previous, listing.ids, loaded_at):
        for name, column in columns.items():
            column.append(row.get(name))
    return pa.table(columns, schema=arrow_schema(SEGMENT_COLUMNS))


def definitions_table(listing: SegmentListing, account_id: str, loaded_at: dt.datetime) -> pa.Table:
    """One row per listed segment with a definition: the state seen now, stamped as first seen by this load."""
    listed = [segment for segment in listing if segment.definition_hash is not None]
    columns = {
        "account_id": [account_id] * len(listed),
        "segment_id": [segment.id for segment in listed],
        "definition_hash": [segment.definition_hash for segment in listed],
        "definition": [segment.definition for segment in listed],
        "segment_updated": [segment.updated or loaded_at for segment in listed],
        "first_seen_at": [loaded_at] * len(listed),
    }
    return pa.table(columns, schema=arrow_schema(DEFINITION_COLUMNS))


class _JsonAsTextNotice(logging.Filter):
    """Drops dlt's warning that an Arrow table's hints differ from the resource's, for these tables only.

    dlt reads an Arrow string column as `text`; the JSON columns here are declared `json` and sent as text on
    purpose (DuckDB stores the text as JSON). The tables are built to the declared schema (`arrow_schema`),
    so that is the only difference, and the warning would show on every run.
    """

    PREFIXES = tuple(
        f"In resource: {table}, when merging arrow schema with dlt schema"
        for table in (SEGMENTS_TABLE, SEGMENT_DEFINITIONS_TABLE, SEGMENT_TAGS_TABLE)
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


logging.getLogger("dlt").addFilter(_JsonAsTextNotice())


@dlt.source(name="klaviyo_segments", max_table_nesting=0, schema_contract=FROZEN_TYPES)
def klaviyo_segments_source(
    account: Account,
    segments_listed: SegmentListing | Iterable[dict],
    previous_segments: list[dict],
    loaded_at: dt.datetime,
    tag_names: dict[str, str] | None = None,
    *,
    account_name: str = DEFAULT_ACCOUNT_NAME,
):
    """The account, its segments and their definition versions, from data the caller already fetched.

    Args:
        account: the account the key belongs to.
        segments_listed: the whole listing of GET /api/segments (`KlaviyoClient.segment_listing`), or its
            JSON:API resources as collected.
        previous_segments: the rows stored for this account before this run (`warehouse.stored_segments`),
            to notice deletions.
        loaded_at: the time of this load, stamped on every row.
        tag_names: with resources, tag id -> name when they were listed with include=tags (a listing carries
            its own). None leaves the stored tags as they are (not listed, or the key lacks tags:read).
        account_name: the account's short name in the accounts file (`default` without the file); stored
            in klaviyo.accounts.account_name, from where every mart row carries it.

    Raises:
        ValueError: account_name is empty, so no row could say which account it is.

    Returns resources: accounts, segments, segment_definitions and, with tag_names, segment_tags.
    """
    if not isinstance(account_name, str) or not account_name.strip():
        raise ValueError(
            f"account_name={account_name!r}: every account needs its short name from the accounts file "
            f"(or {DEFAULT_ACCOUNT_NAME!r} without one); pass the account's `name`"
        )
    listing = segments_listed
    if not isinstance(listing, SegmentListing):
        listing = SegmentListing.of(segments_listed, tag_names)

    @dlt.resource(
        name=ACCOUNTS_TABLE,
        primary_key="account_id",
        write_disposition="merge",
        columns=ACCOUNT_COLUMNS,
        # a warehouse made before account_name existed has the table without it; frozen columns would refuse
        # to add it. The row is built here from four known fields, so new columns can only be ours
        schema_contract={"tables": "evolve", "columns": "evolve", "data_type": "freeze"},
    )
    def accounts():
        yield {
            "account_id": account.id,
            "timezone": account.timezone,
            "name": account.name,
            "account_name": account_name,
            "_loaded_at": loaded_at,
        }

    @dlt.resource(
        name=SEGMENTS_TABLE,
        primary_key=["account_id", "id"],
        write_disposition="merge",
        columns=SEGMENT_COLUMNS,
        file_format=LOADER_FILE_FORMAT,
        # a warehouse made before processing_seen_at existed has the table without it; frozen columns would
        # refuse to add it. The table is built to its declared schema (see ARROW_CONTRACT), so new columns are ours
        schema_contract={"tables": "evolve", "columns": "evolve", "data_type": "evolve"},
    )
    def segments():
        yield segments_table(listing, account.id, previous_segments, loaded_at)

    @dlt.resource(
        name=SEGMENT_DEFINITIONS_TABLE,
        primary_key=DEFINITION_KEY,
        # insert-only: a state seen again must keep the moment it was first seen
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        columns=DEFINITION_COLUMNS,
        file_format=LOADER_FILE_FORMAT,
        # a warehouse made before segment_updated joined the key stores that column without the key hint;
        # a frozen data_type contract would refuse to add it (and see ARROW_CONTRACT)
        schema_contract=ARROW_CONTRACT,
    )
    def segment_definitions():
        yield definitions_table(listing, account.id, loaded_at)

    if not listing.tags_listed:
        return accounts, segments, segment_definitions

    @dlt.resource(
        name=SEGMENT_TAGS_TABLE,
        primary_key=["account_id", "segment_id"],
        write_disposition="merge",
        columns=SEGMENT_TAG_COLUMNS,
        file_format=LOADER_FILE_FORMAT,
        schema_contract=ARROW_CONTRACT,
    )
    def segment_tags():
        yield segment_tags_table(listing, account.id, loaded_at)

    return accounts, segments, segment_definitions, segment_tags
