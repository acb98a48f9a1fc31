"""The Dagster code location: `dagster dev` (via workspace.yaml) and `dagster ... -m segment_pipeline.definitions`.

The settings are read when Dagster first loads the location (not when this module is imported), and the
definitions are built from them (`defs.deployment.build_definitions`). A bad setting or accounts file stops
the load with a message that names it and the fix.
"""

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    from .defs.deployment import build_definitions
    from .settings import load_settings

    return build_definitions(load_settings())
