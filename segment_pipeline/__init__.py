"""segment-pipeline: Klaviyo segment growth history in DuckDB, orchestrated by Dagster, modelled by dbt."""

__version__ = "0.1.0"
