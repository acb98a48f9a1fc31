"""DuckDB's DuckLake and postgres extensions, placed from their Python packages where DuckDB looks for them.

DuckDB fetches an extension from its own repository the first time a statement needs it. That cannot work
on a host without internet access (these machines, many production networks), so the binaries come from
PyPI packages instead (`duckdb-extension-ducklake`, `duckdb-extension-postgres`: the `lake` extra) and are
copied into an extension directory of the pipeline's own, laid out as DuckDB expects:
`<dir>/v<duckdb version>/<platform>/<name>.duckdb_extension`. Every DuckDB connection to a lake names that
directory and turns automatic downloads off (`connection_config`), so a missing file is a clear error here
rather than a download attempt that hangs or fails far away.

The packages are built for one DuckDB version each (1.5.5 pins `duckdb==1.5.5`) and for linux_amd64 only; on
another platform, put the files in the directory by hand (DuckDB's `INSTALL ... ` on a machine with internet
access writes them to `~/.duckdb/extensions/`) and they are used as they are.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb


class LakeExtensionsError(RuntimeError):
    """An extension a lake needs is neither packaged for this DuckDB nor already in the extension directory."""


@dataclass(frozen=True)
class PackagedExtension:
    name: str  # the file name DuckDB loads: <name>.duckdb_extension
    package: str  # the Python package that ships it
    distribution: str  # what to pip install
    packaged_file: str  # the file's name inside the package
    required: bool = True


EXTENSIONS = (
    PackagedExtension("ducklake", "duckdb_extension_ducklake", "duckdb-extension-ducklake", "ducklake"),
    # DuckDB calls the postgres extension postgres_scanner (its alias `postgres` is what ATTACH autoloads)
    PackagedExtension("postgres_scanner", "duckdb_extension_postgres", "duckdb-extension-postgres", "postgres"),
    # object storage for the data path (s3://, gs://, ...): used when installed, not needed for a local folder
    PackagedExtension("httpfs", "duckdb_extension_httpfs", "duckdb-extension-httpfs", "httpfs", required=False),
    PackagedExtension("aws", "duckdb_extension_aws", "duckdb-extension-aws", "aws", required=False),
)

INSTALL_HINT = "pip install 'segment-pipeline[lake]'"


def duckdb_version() -> str:
    """The running DuckDB's version as its extension directories name it, e.g. `v1.5.5`."""
    return duckdb.execute("select library_version from pragma_version()").fetchone()[0]


def duckdb_platform() -> str:
    """The platform DuckDB builds extensions for, e.g. `linux_amd64`."""
    return duckdb.execute("pragma platform").fetchone()[0]


def extension_path(directory: Path, name: str) -> Path:
    """Where DuckDB looks for extension `name` under `directory`, for the running DuckDB and platform."""
    return Path(directory) / duckdb_version() / duckdb_platform() / f"{name}.duckdb_extension"


def _packaged_file(extension: PackagedExtension, version: str) -> Path | None:
    """The extension file the installed package ships for DuckDB `version`, or None when there is none."""
    spec = importlib.util.find_spec(extension.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    candidate = root / "extensions" / version / f"{extension.packaged_file}.duckdb_extension"
    return candidate if candidate.is_file() else None


def _packaged_versions(extension: PackagedExtension) -> list[str]:
    spec = importlib.util.find_spec(extension.package)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    return sorted(path.name for path in root.iterdir()) if root.is_dir() else []


def _same_file(source: Path, target: Path) -> bool:
    """Whether `target` is a finished copy of `source` (copies keep the source's size and modification time)."""
    try:
        source_stat, target_stat = source.stat(), target.stat()
    except FileNotFoundError:
        return False
    return source_stat.st_size == target_stat.st_size and source_stat.st_mtime_ns == target_stat.st_mtime_ns


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy to a temporary file beside `target`, then rename it into place.

    Processes that place the same file at once each write their own temporary file; the rename is atomic,
    so a DuckDB loading the extension meanwhile sees the old file or the new one, never half of one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        shutil.copy2(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def place_extensions(directory: Path) -> dict[str, Path]:
    """Put the lake's extensions into `directory` for the running DuckDB; returns each extension's file.

    Idempotent and safe with several processes at once: a file already placed from the same package is left
    alone (two `stat` calls), anything else is copied atomically. An extension with no package installed is
    accepted when its file is already in place (put there by hand); a required one that is neither raises
    LakeExtensionsError saying what to install.
    """
    version, platform = duckdb_version(), duckdb_platform()
    placed: dict[str, Path] = {}
    missing: list[str] = []
    for extension in EXTENSIONS:
        target = Path(directory) / version / platform / f"{extension.name}.duckdb_extension"
        source = _packaged_file(extension, version)
        if source is not None:
            if not _same_file(source, target):
                _copy_atomically(source, target)
            placed[extension.name] = target
        elif target.is_file():
            placed[extension.name] = target
        elif extension.required:
            other_versions = _packaged_versions(extension)
            if other_versions:
                missing.append(
                    f"{extension.distribution} is installed for DuckDB {', '.join(other_versions)} but this "
                    f"environment runs DuckDB {version}: install the matching pair ({INSTALL_HINT} pins both)"
                )
            else:
                missing.append(f"{extension.distribution} is not installed ({INSTALL_HINT}, linux_amd64 only)")
    if missing:
        raise LakeExtensionsError(
            "a DuckLake warehouse needs DuckDB's ducklake and postgres extensions, and "
            + "; ".join(missing)
            + f". On another platform, put ducklake.duckdb_extension and postgres_scanner.duckdb_extension for "
            f"DuckDB {version} into {Path(directory) / version / platform}/ (DuckDB never downloads them here)."
        )
    return placed


def connection_config(directory: Path) -> dict[str, object]:
    """The DuckDB settings every connection to a lake is opened with (`duckdb.connect(config=...)`).

    DuckDB loads the ducklake and postgres extensions from `directory` when ATTACH needs them, and never
    tries to download one.
    """
    return {
        "extension_directory": str(directory),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }
