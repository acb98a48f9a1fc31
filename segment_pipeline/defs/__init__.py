"""Dagster definitions, one concern per module; `segment_pipeline.definitions` puts them together."""
