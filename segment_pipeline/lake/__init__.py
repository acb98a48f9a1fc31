"""The warehouse as a DuckLake: a PostgreSQL catalog, Parquet files under a data path, written from any machine.

Plain services, no Dagster: `Lake` (how DuckDB, dlt and dbt attach one), the extensions it needs
(`extensions`), the lock that makes writers take turns (`writer_lock`), clear errors and commit-conflict
retries (`errors`, `loading`), and the copy of a file warehouse into a lake (`copy`).
"""

from .catalog import LAKE_PREFIX, CatalogSettingError, PostgresCatalog
from .errors import LakeCommitConflictError, LakeUnavailableError
from .extensions import LakeExtensionsError, connection_config, place_extensions
from .location import Lake

__all__ = [
    "LAKE_PREFIX",
    "CatalogSettingError",
    "Lake",
    "LakeCommitConflictError",
    "LakeExtensionsError",
    "LakeUnavailableError",
    "PostgresCatalog",
    "connection_config",
    "place_extensions",
]
