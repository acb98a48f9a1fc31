"""dlt source `segments_api`: a snapshot's Arrow tables merged on their natural keys into the `segments_api`
schema, so loading the same snapshot again changes nothing.

- `workspaces`, merged on workspace_name: each workspace's timezone (the days its counts are attributed to).
- `segments`, merged on (workspace_name, segment_id): the segment as last listed, when it was first and last
  seen, and `deleted_at` once a complete listing lacks it.
- `segment_definitions`, keyed on (workspace_name, segment_id, definition_hash, first_seen_at) and
  insert-only: a definition other than the segment's newest stored one is a new row (a new version), a
  return to an earlier definition (A -> B -> A) included; a re-run of the same snapshot adds nothing.
- `segment_count_snapshots`, merged on (workspace_name, segment_id, counted_date): the latest recount of each
  local day (the snapshot loads only counts newer than the stored ones, so an older one never replaces it).
"""

from __future__ import annotations

import dlt
import pyarrow as pa

from ..sources.segments import FROZEN_TYPES
from ..tables import (
    SEGMENTS_API_DEFINITIONS_TABLE,
    SEGMENTS_API_SEGMENTS_TABLE,
    SEGMENTS_API_SNAPSHOTS_TABLE,
    SEGMENTS_API_WORKSPACES_TABLE,
)
from .snapshot import DEFINITIONS_SCHEMA, SEGMENTS_SCHEMA, SNAPSHOTS_SCHEMA, WORKSPACES_SCHEMA, dlt_columns

KEYS = {
    SEGMENTS_API_WORKSPACES_TABLE: ["workspace_name"],
    SEGMENTS_API_SEGMENTS_TABLE: ["workspace_name", "segment_id"],
    SEGMENTS_API_DEFINITIONS_TABLE: ["workspace_name", "segment_id", "definition_hash", "first_seen_at"],
    SEGMENTS_API_SNAPSHOTS_TABLE: ["workspace_name", "segment_id", "counted_date"],
}
_SCHEMAS = {
    SEGMENTS_API_WORKSPACES_TABLE: WORKSPACES_SCHEMA,
    SEGMENTS_API_SEGMENTS_TABLE: SEGMENTS_SCHEMA,
    SEGMENTS_API_DEFINITIONS_TABLE: DEFINITIONS_SCHEMA,
    SEGMENTS_API_SNAPSHOTS_TABLE: SNAPSHOTS_SCHEMA,
}


@dlt.source(name="segments_api", max_table_nesting=0, schema_contract=FROZEN_TYPES)
def segments_api_source(tables: dict[str, pa.Table]):
    """One resource per table of `snapshot.snapshot_tables`."""

    def resource(table_name: str):
        columns = dlt_columns(_SCHEMAS[table_name])
        disposition: dict = {"disposition": "merge"}
        contract = None
        if table_name == SEGMENTS_API_DEFINITIONS_TABLE:
            disposition["strategy"] = "insert-only"
            # a warehouse made before first_seen_at joined the key stores that column without the key hint; a
            # frozen data_type contract would refuse to add it. The rows are Arrow of a fixed schema built here,
            # so letting this table's hints evolve admits no stray column type
            contract = {"tables": "evolve", "columns": "freeze", "data_type": "evolve"}
        if table_name == SEGMENTS_API_SNAPSHOTS_TABLE:
            # of two rows of one day in a load, the later recount wins
            columns["last_counted_at"] = {**columns["last_counted_at"], "dedup_sort": "desc"}

        @dlt.resource(
            name=table_name,
            primary_key=KEYS[table_name],
            write_disposition=disposition,
            columns=columns,
            schema_contract=contract,
        )
        def rows():
            # yielded even when empty: the table is then created by the first snapshot, with its declared columns,
            # so queries and models over it work before a segment or a count has been seen
            yield tables[table_name]

        return rows

    return [resource(name) for name in _SCHEMAS]
