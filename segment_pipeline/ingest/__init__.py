"""The ingestion services: one account's segments and daily series into the warehouse. No Dagster here.

The Dagster assets (`defs/ingest/`) call these and turn what they return into materializations.
"""
