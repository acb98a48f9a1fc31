"""DuckDB's ducklake and postgres extensions, placed from their packages; DuckDB never downloads one."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from segment_pipeline.lake import LakeExtensionsError, connection_config, place_extensions
from segment_pipeline.lake import extensions as lake_extensions


def loads(directory, extension: str) -> bool:
    with duckdb.connect(config=connection_config(directory)) as connection:
        try:
            connection.execute(f"LOAD {extension}")
        except duckdb.Error:
            return False
        return True


def test_extensions_are_placed_once_where_duckdb_loads_them_without_downloading(tmp_path):
    directory = tmp_path / "extensions"
    assert not loads(directory, "ducklake")  # nothing placed: DuckDB must not fetch it from the internet
    placed = place_extensions(directory)
    version = duckdb.execute("select library_version from pragma_version()").fetchone()[0]
    assert placed["ducklake"] == directory / version / "linux_amd64" / "ducklake.duckdb_extension"
    assert placed["postgres_scanner"].name == "postgres_scanner.duckdb_extension"
    first = {name: path.stat().st_ino for name, path in placed.items()}
    assert place_extensions(directory) == placed
    assert {name: path.stat().st_ino for name, path in placed.items()} == first  # not copied again
    assert loads(directory, "ducklake") and loads(directory, "postgres_scanner")


def test_several_processes_placing_at_once_all_succeed_with_whole_files(tmp_path):
    directory = tmp_path / "extensions"
    script = "import sys; from pathlib import Path; from segment_pipeline.lake import place_extensions; "
    script += "place_extensions(Path(sys.argv[1]))"
    processes = [subprocess.Popen([sys.executable, "-c", script, str(directory)]) for _ in range(4)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0, 0]
    version = duckdb.execute("select library_version from pragma_version()").fetchone()[0]
    for extension in lake_extensions.EXTENSIONS:
        source = lake_extensions._packaged_file(extension, version)
        if source is not None:
            target = lake_extensions.extension_path(directory, extension.name)
            assert target.stat().st_size == source.stat().st_size
    assert not [path for path in directory.rglob("*.tmp")]  # no temporary file left behind
    assert loads(directory, "ducklake")


def test_extensions_for_another_duckdb_are_refused_with_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(lake_extensions, "duckdb_version", lambda: "v1.9.0")
    with pytest.raises(
        LakeExtensionsError, match=r"installed for DuckDB v1\.5\.5 but this environment runs DuckDB v1\.9\.0"
    ):
        place_extensions(tmp_path / "extensions")


def test_files_put_in_place_by_hand_are_used_where_no_package_exists(tmp_path, monkeypatch):
    directory = tmp_path / "extensions"
    place_extensions(directory)
    # another platform: no package ships the files, an administrator copied them
    monkeypatch.setattr(lake_extensions, "_packaged_file", lambda extension, version: None)
    monkeypatch.setattr(lake_extensions, "_packaged_versions", lambda extension: [])
    assert set(place_extensions(directory)) == {"ducklake", "postgres_scanner"}
    with pytest.raises(LakeExtensionsError, match="duckdb-extension-ducklake is not installed"):
        place_extensions(tmp_path / "empty")
