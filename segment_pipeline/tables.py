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
