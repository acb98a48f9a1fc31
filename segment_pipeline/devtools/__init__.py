"""Tools for trying and testing the pipeline without a Klaviyo account or a server of one's own:
`segment-pipeline demo` and `segment-pipeline dev` (the bundled simulator, a separate server process, and
Dagster), and a local PostgreSQL for the lake deployment. Nothing in the pipeline itself depends on them.
"""
