"""dlt source `klaviyo_series`: daily segment series, one row per (account_id, segment_id, date).

Rows reach dlt as Arrow tables, one per staged report response: dlt merges millions of Arrow rows in
seconds where the same rows as Python dicts take minutes. The table is merged on its natural key, so
loading any response again replaces those days and never duplicates one; of two fetches of a cell, the
newer one (`fetched_at`) is kept, whichever is loaded last.

The key is a dlt *merge key*, not a primary key: dlt deletes the stored rows of the loaded cells and inserts
the new ones, without ranking every loaded row to drop duplicates (a window over all of them, most of the
merge's cost). A load holds each cell once because the staging says so: a file never repeats a cell, and of
two files of one load that hold a cell only the newer one's row is read (`series_staging.StagedLoad`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dlt
import pyarrow as pa

from ..klaviyo import Account, KlaviyoClient, SeriesRequest, SeriesResponse, fetch_series
from ..tables import SEGMENT_SERIES_TABLE
from .segments import FROZEN_TYPES
from .series_staging import STAGED_SCHEMA, stamp_fetch

# dlt's column hints, written from the staged rows' Arrow schema (klaviyo/series.py and series_staging.py), plus
# the load's own column
_DLT_TYPES = {
    pa.string(): "text",
    pa.date32(): "date",
    pa.int64(): "bigint",
    pa.timestamp("us", tz="UTC"): "timestamp",
}
SERIES_COLUMNS = {
    **{
        field.name: {"data_type": _DLT_TYPES[field.type], **({} if field.nullable else {"nullable": False})}
        for field in STAGED_SCHEMA
    },
    # fetched_on, the account-local day the numbers were fetched, decides whether the day is final
    # (planner.is_final); fetched_at, the moment, decides which fetch of a cell wins (the load leaves out rows
    # older than the stored ones and than another file's of the same load, series_staging.prepare_load)
    "fetched_at": {"data_type": "timestamp"},
    "_loaded_at": {"data_type": "timestamp"},
}
SERIES_KEY = ("account_id", "segment_id", "date")
# a warehouse loaded before the merge key has these columns as dlt's primary key, which would bring the ranking
# back: the hint is taken off them
for _name in SERIES_KEY:
    SERIES_COLUMNS[_name] = {**SERIES_COLUMNS[_name], "primary_key": False}


def fetch_series_table(
    client: KlaviyoClient, account: Account, request: SeriesRequest, fetched_on: dt.date
) -> SeriesResponse:
    """One report request as rows, stamped with the day and the moment it was fetched; a bad response raises,
    keeping none.

    Segments deleted since the listing are left out of the rows and named in `deleted_segment_ids`.
    """
    response = fetch_series(client, request, account, today=fetched_on)
    table = stamp_fetch(response.table, fetched_on, dt.datetime.now(dt.UTC))
    return dataclasses.replace(response, table=table)


@dlt.source(name="klaviyo_series", max_table_nesting=0, schema_contract=FROZEN_TYPES)
def klaviyo_series_source(files: list[Path], read: Callable[[Path], pa.Table], loaded_at: dt.datetime):
    """The staged responses, read one file at a time.

    Args:
        files: staged response files (`series_staging.prepare_load`).
        read: reads one file into an Arrow table (the rows of it to load).
        loaded_at: the time of this load, stamped on every row.

    Returns resources: segment_series_daily.
    """

    @dlt.resource(
        name=SEGMENT_SERIES_TABLE,
        merge_key=list(SERIES_KEY),
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=SERIES_COLUMNS,
        # a warehouse made before fetched_at existed has the table without it; frozen columns would refuse to
        # add it. Every staged file is checked to have exactly STAGED_SCHEMA's columns, so new ones are ours
        schema_contract={"tables": "evolve", "columns": "evolve", "data_type": "freeze"},
    )
    def segment_series_daily():
        stamp = pa.scalar(loaded_at, type=pa.timestamp("us", tz="UTC"))
        for path in files:
            table = read(path)
            # a file whose every row is older than the warehouse's leaves none
            if table.num_rows:
                yield table.append_column(
                    pa.field("_loaded_at", stamp.type), pa.array([stamp] * table.num_rows, stamp.type)
                )

    return (segment_series_daily,)
