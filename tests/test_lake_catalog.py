"""The lake setting: its catalog connection string is read strictly, and never carries a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from segment_pipeline.lake import CatalogSettingError, Lake, PostgresCatalog


def test_libpq_strings_and_uris_name_the_same_catalog():
    from_keywords = PostgresCatalog.parse(
        "ducklake:postgres:dbname=lake host=db.internal port=6543 user=pipeline sslmode=require"
    )
    from_uri = PostgresCatalog.parse("ducklake:postgres:postgresql://pipeline@db.internal:6543/lake?sslmode=require")
    assert from_keywords == from_uri
    assert from_keywords.options == (("sslmode", "require"), ("connect_timeout", "10"))
    assert (
        from_keywords.libpq()
        == "dbname=lake host=db.internal port=6543 user=pipeline sslmode=require connect_timeout=10"
    )
    assert PostgresCatalog.parse(from_keywords.url()) == from_keywords


def test_quoted_values_round_trip():
    catalog = PostgresCatalog.parse(r"dbname='my lake' host=h user='o\'brien' connect_timeout=3 port=5432")
    assert (catalog.dbname, catalog.user, catalog.port) == ("my lake", "o'brien", 5432)
    assert catalog.options == (("connect_timeout", "3"),)
    assert PostgresCatalog.parse(catalog.libpq()) == catalog


@pytest.mark.parametrize(
    "text",
    [
        "dbname=lake host=h user=u password=secret",
        "postgresql://u:secret@h:5432/lake",
        "dbname=lake host=h user=u passfile=/root/.pgpass",
    ],
)
def test_a_password_in_the_setting_is_refused_and_pointed_to_the_environment(text):
    with pytest.raises(CatalogSettingError, match="PGPASSWORD") as refused:
        PostgresCatalog.parse(text)
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("host=h user=u", "dbname"),
        ("dbname=lake user=u", "host"),
        ("dbname=lake host=h user=u port=http", "not a number"),
        ("dbname=lake host=h user=u port=70000", "not a TCP port"),
        ("dbname=lake host=h user=u sslmode='require", "not closed"),
        ("just some words", "libpq connection string"),
    ],
)
def test_an_unusable_setting_says_what_is_wrong(text, complaint):
    with pytest.raises(CatalogSettingError, match=complaint):
        PostgresCatalog.parse(text)


def test_writers_name_the_data_path_and_readers_attach_read_only(tmp_path):
    lake = Lake.from_url("ducklake:postgres:dbname=lake host=h user=u", "relative/data", tmp_path / "ext")
    assert lake.data_path == str(Path("relative/data").resolve())  # dbt runs elsewhere: always absolute
    assert lake.attach_sql() == (
        "ATTACH 'ducklake:postgres:dbname=lake host=h port=5432 user=u connect_timeout=10' AS lake "
        f"(METADATA_SCHEMA 'ducklake', DATA_PATH '{lake.data_path}')"
    )
    assert lake.attach_sql(read_only=True).endswith("AS lake (READ_ONLY, METADATA_SCHEMA 'ducklake')")
    with pytest.raises(CatalogSettingError, match="ducklake:postgres:"):
        Lake.from_url("postgres:dbname=lake host=h user=u", "data", tmp_path)
    with pytest.raises(CatalogSettingError, match="lower-case"):
        Lake.from_url("ducklake:postgres:dbname=lake host=h user=u", "data", tmp_path, alias="Lake; drop")
