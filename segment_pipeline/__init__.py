"""segment-pipeline: Klaviyo segment growth history in DuckDB, orchestrated by Dagster, modelled by dbt."""

import os

__version__ = "0.1.0"

# Arrow's default allocator (mimalloc) keeps much of what a step frees for later; glibc's gives it back. With
# the system allocator an account's run of a year of 10,000 segments peaked about 60 MB lower (see
# docs/performance.md). Arrow reads this when it first allocates, which every process of the pipeline does
# after importing this package; a value already in the environment wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
