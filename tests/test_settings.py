"""The one settings reader: what each variable becomes, what it refuses and how it says so."""

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segment_pipeline.accounts import AccountsFileError
from segment_pipeline.config import ConfigError
from segment_pipeline.klaviyo import KlaviyoConfigError
from segment_pipeline.settings import (
    ACCOUNTS_FILE_ENV,
    SINGLE_ACCOUNT_VARIABLES,
    VARIABLES,
    child_environment,
    key_is_set,
    load_settings,
    read_api_key,
    unknown_variables,
)


def test_without_an_accounts_file_the_single_account_variables_make_one_account_named_default(tmp_path):
    env = {
        "KLAVIYO_API_KEY": "pk_abc",
        "KLAVIYO_TIMEZONE": "Europe/Paris",
        "KLAVIYO_REPORT_RATE_PER_MINUTE": "1.5",
        "KLAVIYO_REPORT_DAILY_LIMIT": "100",
        "SERIES_LOOKBACK_DAYS": "9",
        "KLAVIYO_HISTORY_START": "2025-01-02",
        "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"),
    }
    settings = load_settings(env)
    (account,) = settings.accounts
    assert account.name == "default" and settings.accounts.names == ("default",)
    assert (account.timezone, account.report_rate_per_minute, account.report_daily_limit) == ("Europe/Paris", 1.5, 100)
    assert (account.lookback_days, account.history_start) == (9, dt.date(2025, 1, 2))
    assert account.api_key_env == "KLAVIYO_API_KEY"
    assert settings.storage.warehouse_path == tmp_path / "w.duckdb"
    # the key is not in the settings: it is read from the variable when a run needs it
    assert "pk_abc" not in repr(settings)
    assert read_api_key(account, env).reveal() == "pk_abc"
    assert key_is_set(account, env) and not key_is_set(account, {})


def test_with_an_accounts_file_the_single_account_variables_are_ignored(tmp_path):
    accounts_file = tmp_path / "accounts.yaml"
    accounts_file.write_text(
        textwrap.dedent(
            """\
            accounts:
              - name: brand_a
                api_key_env: KEY_A
                timezone: US/Pacific
              - name: brand_b
                api_key_env: KEY_B
                timezone: Asia/Tokyo
            """
        ),
        encoding="utf-8",
    )
    env = {ACCOUNTS_FILE_ENV: str(accounts_file), "KEY_A": "pk_a", "KEY_B": "pk_b"}
    # whatever the single-account variables hold, even values they would refuse
    env.update({name: "not a value" for name in SINGLE_ACCOUNT_VARIABLES})
    settings = load_settings(env)
    assert settings.accounts.names == ("brand_a", "brand_b")
    assert settings.accounts.source == accounts_file
    assert settings.where_configured(settings.accounts["brand_b"]) == f"account 'brand_b' in {accounts_file}"


def test_an_accounts_file_with_problems_is_refused_with_its_lines(tmp_path):
    accounts_file = tmp_path / "accounts.yaml"
    accounts_file.write_text("accounts:\n  - name: Brand A\n    api_key_env: KEY_A\n", encoding="utf-8")
    with pytest.raises(AccountsFileError) as refused:
        load_settings({ACCOUNTS_FILE_ENV: str(accounts_file)})
    assert f"{accounts_file}:2: account #1, name: 'Brand A' is not a short name" in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("KLAVIYO_TIMEZONE", "Mars/Olympus", "not an IANA timezone"),
        ("KLAVIYO_REPORT_DAILY_LIMIT", "lots", "KLAVIYO_REPORT_DAILY_LIMIT='lots' cannot be read"),
        ("KLAVIYO_HISTORY_START", "2020-01-01", "KLAVIYO_HISTORY_START"),
        ("KLAVIYO_MAX_ATTEMPTS", "0", "KLAVIYO_MAX_ATTEMPTS='0' must be above 0"),
        ("KLAVIYO_TIMEOUT", "nan", "KLAVIYO_TIMEOUT='nan' must be above 0"),
        ("KLAVIYO_RECONCILE_DAYS", "-1", "KLAVIYO_RECONCILE_DAYS='-1' must be at least 0"),
        ("KLAVIYO_TAGS", "sometimes", "KLAVIYO_TAGS"),
        ("KLAVIYO_RECONCILE_SEGMENTS", "some", "KLAVIYO_RECONCILE_SEGMENTS='some' must be one of rotate, all"),
        ("KLAVIYO_BASE_URL", "http://klaviyo.example.com", "KLAVIYO_BASE_URL"),
        ("KLAVIYO_BUDGET_PATH", "/tmp/budget.json", "KLAVIYO_BUDGET_PATH is no longer read"),
    ],
)
def test_a_value_the_pipeline_cannot_use_is_refused_naming_its_variable(variable, value, says):
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: value})
    assert says in str(refused.value)


def test_reconciliation_rotates_unless_told_to_compare_all():
    assert load_settings({}).klaviyo.reconcile_segments == "rotate"
    assert load_settings({"KLAVIYO_RECONCILE_SEGMENTS": " ALL "}).klaviyo.reconcile_segments == "all"


def test_zero_is_allowed_where_it_means_off():
    assert load_settings({"KLAVIYO_RECONCILE_DAYS": "0"}).klaviyo.reconcile_days == 0
    assert load_settings({"WAREHOUSE_DUCKDB_WAIT_SECONDS": "0"}).storage.duckdb_wait_seconds == 0


def test_an_unset_key_is_refused_when_a_run_reads_it_naming_the_variable_and_the_account():
    account = load_settings({}).accounts["default"]
    with pytest.raises(KlaviyoConfigError, match="KLAVIYO_API_KEY is not set, so account 'default' has no API key"):
        read_api_key(account, {"KLAVIYO_API_KEY": "  "})


def test_a_typo_in_a_variable_name_is_found_and_key_variables_are_not_typos():
    env = {"KLAVIYO_TIMEZNOE": "UTC", "KLAVIYO_API_KEY_BRAND_A": "pk_x", "KLAVIYO_TAGS": "off"}
    assert unknown_variables(env) == ["KLAVIYO_TIMEZNOE"]
    assert unknown_variables({"SEGMENTS_API_TIMEZOME": "UTC", "SEGMENTS_API_KEY_NEWS": "k"}) == [
        "SEGMENTS_API_TIMEZOME"
    ]


def test_every_variable_read_is_documented_once():
    names = [variable.name for variable in VARIABLES]
    assert len(names) == len(set(names))
    assert set(SINGLE_ACCOUNT_VARIABLES) <= set(names) and ACCOUNTS_FILE_ENV in names


def test_a_child_process_inherits_the_environment_less_what_is_named(monkeypatch):
    monkeypatch.setenv("SEGMENT_PIPELINE_TEST_VARIABLE", "kept")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_dropped")
    env = child_environment(without=("KLAVIYO_API_KEY",), EXTRA="added")
    assert env["SEGMENT_PIPELINE_TEST_VARIABLE"] == "kept" and env["EXTRA"] == "added"
    assert "KLAVIYO_API_KEY" not in env


def test_dbt_run_by_hand_gets_the_pipelines_default_duckdb_memory_limit():
    # profiles.yml cannot import config.py: its fallback repeats the default, and must say the same
    from segment_pipeline.config import DEFAULT_DUCKDB_MEMORY_LIMIT

    profiles = (Path(__file__).resolve().parents[1] / "dbt_project" / "profiles.yml").read_text()
    fallbacks = re.findall(r"env_var\('DUCKDB_MEMORY_LIMIT', '([^']+)'\)", profiles)
    assert fallbacks and set(fallbacks) == {DEFAULT_DUCKDB_MEMORY_LIMIT}


def test_arrow_allocates_with_glibc_unless_the_environment_says_otherwise():
    # a process of the pipeline loads its settings before any step imports pyarrow, as this one does
    code = "import segment_pipeline.settings, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    chosen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert chosen.stdout.strip() == "system"
    env["ARROW_DEFAULT_MEMORY_POOL"] = "mimalloc"
    kept = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert kept.stdout.strip() == "mimalloc"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("lots", "'lots' is not a memory size: give a number and a unit, such as 64MB or 1GB"),
        ("64", "'64' is not a memory size"),
        ("1MB", "'1MB' is too small for DuckDB to work in: give at least 16MB"),
    ],
)
def test_a_duckdb_memory_limit_that_duckdb_cannot_take_stops_the_settings(value, says):
    for name in ("DUCKDB_MEMORY_LIMIT", "DUCKDB_LOAD_MEMORY_LIMIT"):
        with pytest.raises(ConfigError, match=f"{name}={re.escape(says)}"):
            load_settings({name: value})
    storage = load_settings({"DUCKDB_MEMORY_LIMIT": "1.5GB", "DUCKDB_LOAD_MEMORY_LIMIT": "512MiB"}).storage
    assert (storage.duckdb_memory_limit, storage.duckdb_load_memory_limit) == ("1.5GB", "512MiB")
