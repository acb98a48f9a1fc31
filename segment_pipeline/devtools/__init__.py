"""Tools for trying the pipeline without a Klaviyo account: `segment-pipeline demo` and `segment-pipeline dev`.

They start the bundled simulator (`klaviyo_simulator`, a separate server process) and Dagster, and point the
pipeline at the simulator. Nothing in the pipeline itself depends on them.
"""
