"""One DuckLake: its PostgreSQL catalog, its data path, and how DuckDB, dlt and dbt each attach it.

Every reader and writer of a lake must attach it the same way: the same catalog database, the same metadata
schema inside it (dlt would otherwise default to one named after its destination and create a second, empty
lake beside the first), the same data path, and DuckDB opened with the extension directory and no downloads.
`Lake` is the one place those are put together; `connect`, `dlt_destination` and `dbt_output` hand them to
DuckDB, dlt's `ducklake` destination and dbt-duckdb's `attach`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from .catalog import LAKE_PREFIX, CatalogSettingError, PostgresCatalog
from .errors import LakeUnavailableError, catalog_problem, is_creation_race
from .extensions import connection_config, place_extensions

if TYPE_CHECKING:
    from dlt.common.destination import Destination

DEFAULT_ALIAS = "lake"
DEFAULT_METADATA_SCHEMA = "ducklake"
# data paths DuckDB writes through its httpfs extension (credentials from the environment; see docs/deploying.md)
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "r2://", "az://", "abfss://")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def sql_string(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _identifier(kind: str, value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise CatalogSettingError(f"{kind} {value!r} must be lower-case letters, digits and _ (at most 63)")
    return value


def normalized_data_path(data_path: str | Path) -> str:
    """An object storage URL as it is, a local folder as an absolute path (dbt runs from another directory)."""
    text = str(data_path).strip()
    if not text:
        raise CatalogSettingError("the lake needs a data path: a folder, or an object storage URL such as s3://...")
    if text.startswith(REMOTE_SCHEMES):
        return text
    if "://" in text:
        raise CatalogSettingError(f"the lake's data path {text!r} is neither a folder nor a supported URL")
    return str(Path(text).expanduser().resolve())


@dataclass(frozen=True)
class Lake:
    """A DuckLake with a PostgreSQL catalog; the password comes from the environment (PGPASSWORD or PGPASSFILE)."""

    catalog: PostgresCatalog
    data_path: str
    extension_dir: Path
    alias: str = DEFAULT_ALIAS
    metadata_schema: str = DEFAULT_METADATA_SCHEMA

    def __post_init__(self) -> None:
        _identifier("the lake's name", self.alias)
        _identifier("the lake's metadata schema", self.metadata_schema)
        object.__setattr__(self, "data_path", normalized_data_path(self.data_path))
        object.__setattr__(self, "extension_dir", Path(self.extension_dir).expanduser().resolve())

    @classmethod
    def from_url(cls, url: str, data_path: str | Path, extension_dir: Path, **fields: Any) -> Lake:
        """A lake from its setting `ducklake:postgres:<libpq connection string>` and its data path."""
        if not url.startswith(LAKE_PREFIX):
            raise CatalogSettingError(f"a lake is named '{LAKE_PREFIX}dbname=... host=... port=... user=...'")
        return cls(catalog=PostgresCatalog.parse(url), data_path=data_path, extension_dir=extension_dir, **fields)

    @property
    def is_local(self) -> bool:
        return not self.data_path.startswith(REMOTE_SCHEMES)

    def attach_sql(self, *, read_only: bool = False) -> str:
        """The ATTACH statement: writers name the data path (it creates the lake the first time, and DuckLake
        refuses one that differs from the stored one); readers take the stored one."""
        options = [f"METADATA_SCHEMA {sql_string(self.metadata_schema)}"]
        if read_only:
            options.insert(0, "READ_ONLY")
        else:
            options.append(f"DATA_PATH {sql_string(self.data_path)}")
        return f"ATTACH {sql_string(self.catalog.url())} AS {self.alias} ({', '.join(options)})"

    def duckdb_config(self) -> dict[str, object]:
        """What `duckdb.connect(config=...)` needs for this lake (the extensions are placed first)."""
        place_extensions(self.extension_dir)
        return connection_config(self.extension_dir)

    def connect(self, *, read_only: bool = False, config: dict[str, object] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with the lake attached and in use (`USE lake`): unqualified names are the lake's.

        Raises LakeUnavailableError, saying what to do, when the catalog is down or refuses the login.
        """
        connection = duckdb.connect(config={**self.duckdb_config(), **(config or {})})
        try:
            # a service's connection: DuckDB would draw a progress bar on whatever terminal started it
            connection.execute("set enable_progress_bar = false")
            connection.execute(self.attach_sql(read_only=read_only))
            connection.execute(f"USE {self.alias}")
        except duckdb.Error as exc:
            connection.close()
            problem = catalog_problem(exc, self.catalog)
            if problem:
                raise LakeUnavailableError(problem) from exc
            raise
        return connection

    def create_if_missing(self, attempts: int = 5) -> None:
        """Create the lake's metadata in its catalog unless it is there (the first writer's attach does).

        Writers that start together on a new lake would each try to create it, and all but one fail on
        PostgreSQL's unique names; they try again and find it made.
        """
        for attempt in range(1, attempts + 1):
            try:
                self.connect().close()
                return
            except duckdb.Error as exc:
                if attempt == attempts or not is_creation_race(exc):
                    raise
                time.sleep(0.2 * attempt)

    def dlt_destination(self, pipeline_name: str, config: dict[str, object] | None = None) -> Destination:
        """dlt's `ducklake` destination writing this lake.

        Each pipeline stages its merges in its own dataset (`<dataset>_staging_<pipeline>`): dlt empties the
        staging tables before every load, and pipelines sharing them would empty each other's rows between
        their staging insert and their merge. So writers that run at once need distinct pipeline names (one
        per account), which also keeps their dlt working directories apart.
        """
        from dlt.common.configuration.specs import ConnectionStringCredentials
        from dlt.destinations import ducklake
        from dlt.destinations.impl.ducklake.configuration import DuckLakeCredentials

        staging_suffix = re.sub(r"[^a-z0-9_]", "_", pipeline_name.lower())
        catalog = ConnectionStringCredentials(
            {
                "drivername": "postgres",
                "database": self.catalog.dbname,
                "username": self.catalog.user,
                "host": self.catalog.host,
                "port": self.catalog.port,
                "query": dict(self.catalog.options),
            }
        )
        credentials = DuckLakeCredentials(
            ducklake_name=self.alias, metadata_schema=self.metadata_schema, catalog=catalog, storage=self.data_path
        )
        # dlt applies these with SET GLOBAL right after connecting, before it attaches the lake
        credentials.global_config = {**self.duckdb_config(), **(config or {})}
        return ducklake(credentials=credentials, staging_dataset_name_layout=f"%s_staging_{staging_suffix}")

    def dbt_output(self, *, schema: str = "main", threads: int = 1, **fields: Any) -> dict[str, Any]:
        """A dbt-duckdb output (a target of profiles.yml) building models in this lake.

        DuckDB itself is in memory; the lake is attached under `alias` and is the target database. The
        extension settings go in `config_options`, which dbt-duckdb passes to `duckdb.connect`, before it
        attaches (its `settings` come later, per cursor; its `extensions` would try to download).
        """
        return {
            "type": "duckdb",
            "path": ":memory:",
            "database": self.alias,
            "schema": schema,
            "threads": threads,
            "config_options": self.duckdb_config(),
            "attach": [
                {
                    "path": self.catalog.url(),
                    "alias": self.alias,
                    "options": {"data_path": self.data_path, "metadata_schema": self.metadata_schema},
                }
            ],
            **fields,
        }

    def dbt_vars(self) -> dict[str, str]:
        """The `--vars` the `lake` target of dbt_project/profiles.yml attaches this lake with (the extensions
        are placed first: dbt-duckdb only loads them)."""
        if self.alias != DEFAULT_ALIAS:
            raise CatalogSettingError(f"dbt_project/profiles.yml attaches the lake as {DEFAULT_ALIAS!r}")
        place_extensions(self.extension_dir)
        return {
            "lake": self.catalog.url(),
            "lake_data_path": self.data_path,
            "lake_metadata_schema": self.metadata_schema,
            "extension_dir": str(self.extension_dir),
        }

    def analyst_sql(self) -> str:
        """The statements an analyst's DuckDB (1.5.5, CLI or Python) runs to query the lake read-only."""
        return "; ".join(
            [
                f"SET extension_directory = {sql_string(str(self.extension_dir))}",
                "SET autoinstall_known_extensions = false",
                self.attach_sql(read_only=True),
                f"USE {self.alias}",
            ]
        )
