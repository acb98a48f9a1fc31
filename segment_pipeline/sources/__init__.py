"""dlt sources for Klaviyo: segment definitions (with their history) and daily segment series.

Two sources with two names and two pipelines, so that neither overwrites the other's dlt schema. Import the
submodules (`sources.segments`, `sources.series`) where they are used: they import dlt, which costs every
process that merely loads the Dagster code half a second.
"""
