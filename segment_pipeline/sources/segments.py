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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import dlt

from ..config import DEFAULT_ACCOUNT_NAME
from ..klaviyo import Account
from ..klaviyo.errors import KlaviyoResponseError
from ..tables import ACCOUNTS_TABLE, SEGMENT_DEFINITIONS_TABLE, SEGMENT_TAGS_TABLE, SEGMENTS_TABLE
from .segment_tags import SEGMENT_TAG_COLUMNS, segment_tag_rows

# dlt's default for rows given as dicts on DuckDB is one INSERT ... VALUES statement per file: with 10,000
# definitions DuckDB parses a statement of tens of megabytes and the load took 750 MB. Parquet files load in a
# few. (Not jsonl: DuckDB's JSON reader unifies the definitions' keys and adds nulls to each.)
LOADER_FILE_FORMAT = "parquet"

# A type the API sends that does not match these fails the load instead of adding a variant column.
FROZEN_TYPES = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}

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


def definition_hash(definition: Any) -> str:
    """A stable fingerprint of a definition: key order and whitespace do not change it."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _timestamp(value: Any, field: str, segment_id: str) -> dt.datetime | None:
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


def segment_rows(resources: Iterable[dict], account_id: str, loaded_at: dt.datetime) -> list[dict]:
    """Flatten JSON:API segment resources into rows; the definition is kept whole, as JSON."""
    rows = []
    for resource in resources:
        segment_id = str(resource["id"])
        attributes = resource.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise KlaviyoResponseError(f"segment {segment_id}: attributes is not an object")
        definition = attributes.get("definition")
        rows.append(
            {
                "account_id": account_id,
                "id": segment_id,
                "name": attributes.get("name"),
                "definition": definition,
                "definition_hash": definition_hash(definition) if definition is not None else None,
                "created": _timestamp(attributes.get("created"), "created", segment_id),
                "updated": _timestamp(attributes.get("updated"), "updated", segment_id),
                "is_active": _flag(attributes, "is_active", segment_id),
                "is_processing": _flag(attributes, "is_processing", segment_id),
                "is_starred": _flag(attributes, "is_starred", segment_id),
                "is_deleted": False,
                "deleted_seen_at": None,
                "_loaded_at": loaded_at,
            }
        )
    return rows


def carry_processing_seen(rows: list[dict], previous: Iterable[dict], loaded_at: dt.datetime) -> list[dict]:
    """Stamp `processing_seen_at`: this load for a segment processing now, else what was stored before."""
    seen_before = {row["id"]: row.get("processing_seen_at") for row in previous}
    for row in rows:
        row["processing_seen_at"] = loaded_at if row["is_processing"] else seen_before.get(row["id"])
    return rows


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


@dlt.source(name="klaviyo_segments", max_table_nesting=0, schema_contract=FROZEN_TYPES)
def klaviyo_segments_source(
    account: Account,
    segment_resources: list[dict],
    previous_segments: list[dict],
    loaded_at: dt.datetime,
    tag_names: dict[str, str] | None = None,
    *,
    account_name: str = DEFAULT_ACCOUNT_NAME,
):
    """The account, its segments and their definition versions, from data the caller already fetched.

    Args:
        account: the account the key belongs to.
        segment_resources: every JSON:API segment resource from GET /api/segments.
        previous_segments: the rows stored for this account before this run, to notice deletions.
        loaded_at: the time of this load, stamped on every row.
        tag_names: tag id -> name when the segments were listed with include=tags; None leaves the stored
            tags as they are (the key lacks tags:read).
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
    current = segment_rows(segment_resources, account.id, loaded_at)
    carry_processing_seen(current, previous_segments, loaded_at)
    current_ids = {row["id"] for row in current}
    all_segments = current + deleted_rows(previous_segments, current_ids, loaded_at)

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
        # refuse to add it. The rows are built here from known fields, so new columns can only be ours
        schema_contract={"tables": "evolve", "columns": "evolve", "data_type": "freeze"},
    )
    def segments():
        yield all_segments

    @dlt.resource(
        name=SEGMENT_DEFINITIONS_TABLE,
        primary_key=DEFINITION_KEY,
        # insert-only: a state seen again must keep the moment it was first seen
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        columns=DEFINITION_COLUMNS,
        file_format=LOADER_FILE_FORMAT,
        # a warehouse made before segment_updated joined the key stores that column without the key hint;
        # a frozen data_type contract would refuse to add it. The rows are built here, not taken from the
        # API as they come, so letting this table's hints evolve admits no stray column types
        schema_contract={"tables": "evolve", "columns": "freeze", "data_type": "evolve"},
    )
    def segment_definitions():
        yield [
            {
                "account_id": row["account_id"],
                "segment_id": row["id"],
                "definition_hash": row["definition_hash"],
                "definition": row["definition"],
                "segment_updated": row["updated"] or loaded_at,
                "first_seen_at": loaded_at,
            }
            for row in current
            if row["definition_hash"] is not None
        ]

    if tag_names is None:
        return accounts, segments, segment_definitions

    @dlt.resource(
        name=SEGMENT_TAGS_TABLE,
        primary_key=["account_id", "segment_id"],
        write_disposition="merge",
        columns=SEGMENT_TAG_COLUMNS,
        file_format=LOADER_FILE_FORMAT,
    )
    def segment_tags():
        yield segment_tag_rows(segment_resources, tag_names, account.id, loaded_at)

    return accounts, segments, segment_definitions, segment_tags
