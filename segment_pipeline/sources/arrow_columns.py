"""Arrow schemas from dlt column hints, so a table handed to dlt as Arrow matches what its resource declares.

dlt keeps its own hints when an Arrow table's types differ and leaves it to the destination to convert; a
table built to the declared types needs no such conversion. JSON columns travel as text, which DuckDB
stores as JSON.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
_TYPES = {"text": pa.string(), "json": pa.string(), "timestamp": TIMESTAMP, "bool": pa.bool_(), "bigint": pa.int64()}


def arrow_schema(columns: dict[str, dict]) -> pa.Schema:
    """The Arrow schema of a table declared as dlt column hints, in their order (`nullable: False` kept)."""
    fields = [
        pa.field(name, _TYPES[hint["data_type"]], nullable=hint.get("nullable", True)) for name, hint in columns.items()
    ]
    return pa.schema(fields)
