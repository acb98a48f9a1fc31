"""Names of the schemas and tables in the DuckDB warehouse: the one place they are written down.

dlt loads the raw tables into RAW_DATASET; dbt reads them as sources and writes the marts into MARTS_SCHEMA.
"""

RAW_DATASET = "klaviyo"

ACCOUNTS_TABLE = "accounts"
SEGMENTS_TABLE = "segments"
SEGMENT_DEFINITIONS_TABLE = "segment_definitions"
SEGMENT_SERIES_TABLE = "segment_series_daily"
# each segment's tags (GET /api/segments?include=tags), one row per segment
SEGMENT_TAGS_TABLE = "segment_tags"

MARTS_SCHEMA = "marts"

# The Segments API platform's raw tables (segment_pipeline/segments_api/snapshot.py), in their own schema
SEGMENTS_API_DATASET = "segments_api"
SEGMENTS_API_WORKSPACES_TABLE = "workspaces"
SEGMENTS_API_SEGMENTS_TABLE = "segments"
SEGMENTS_API_DEFINITIONS_TABLE = "segment_definitions"
SEGMENTS_API_SNAPSHOTS_TABLE = "segment_count_snapshots"
