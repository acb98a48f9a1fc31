"""The accounts file (`segment_pipeline.accounts`): typed settings, every refusal with its line, the fallback."""

from __future__ import annotations

import re
from pathlib import Path
from textwrap import dedent

import pytest

from segment_pipeline.accounts import (
    Accounts,
    AccountSettings,
    AccountsFileError,
    SegmentFilter,
    read_accounts_file,
    select_segments,
)
from segment_pipeline.config import DEFAULT_LOOKBACK_DAYS, MAX_LOOKBACK_DAYS, ConfigError
from segment_pipeline.ingest.access import KlaviyoAccess
from segment_pipeline.klaviyo.errors import KlaviyoConfigError
from segment_pipeline.klaviyo.limits import REPORTS_RATE_LIMIT
from segment_pipeline.settings import ACCOUNTS_FILE_ENV, load_settings, read_api_key

REPO = Path(__file__).resolve().parents[1]
KEYS = {"KEY_A": "key-of-a", "KEY_B": "key-of-b", "KEY_C": "key-of-c"}
PASTED_KEY = "pk_" + "0123456789abcdef" * 2 + "ab"

GOOD = """\
accounts:
  - name: brand_a
    api_key_env: KEY_A
    timezone: Australia/Sydney
    report_rate_per_minute: 1.5
    report_daily_limit: 150
    lookback_days: 5
    segments:
      is_active: true
      name_matches: ["VIP*", "*churn*"]
  - name: brand_b
    api_key_env: KEY_B
    timezone: US/Pacific
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(dedent(text))
    return path


def load_accounts(env: dict) -> Accounts:
    return load_settings(env).accounts


def problems_of(path: Path, env: dict | None = None) -> AccountsFileError:
    with pytest.raises(AccountsFileError) as caught:
        read_accounts_file(path, KEYS if env is None else env)
    error = caught.value
    # every message names the file, and every line of it says how to fix the problem
    assert str(path) in str(error)
    assert all(f"{path}:" in line and "Fix: " in line for line in str(error).splitlines()[1:])
    return error


def only_problem(path: Path, env: dict | None = None):
    error = problems_of(path, env)
    assert len(error.problems) == 1, str(error)
    return error.problems[0], str(error)


# -- a good file ----------------------------------------------------------------------------------------------


def test_a_good_file_gives_typed_frozen_settings_with_defaults_filled_in(tmp_path):
    accounts = read_accounts_file(write(tmp_path, GOOD), KEYS)
    assert accounts.names == ("brand_a", "brand_b") and len(accounts) == 2
    assert accounts.source == tmp_path / "accounts.yaml"
    a, b = accounts
    assert a == AccountSettings(
        name="brand_a",
        api_key_env="KEY_A",
        timezone="Australia/Sydney",
        report_rate_per_minute=1.5,
        report_daily_limit=150,
        lookback_days=5,
        segments=SegmentFilter(is_active=True, name_matches=("VIP*", "*churn*")),
    )
    assert (b.report_rate_per_minute, b.report_daily_limit, b.lookback_days) == (
        REPORTS_RATE_LIMIT.per_minute,
        REPORTS_RATE_LIMIT.per_day,
        DEFAULT_LOOKBACK_DAYS,
    )
    assert b.segments.tracks_all and not a.segments.tracks_all
    assert accounts["brand_b"] is b
    with pytest.raises(KeyError, match="the accounts are 'brand_a' and 'brand_b'"):
        accounts["brand_c"]
    with pytest.raises(Exception, match="frozen"):
        a.timezone = "UTC"  # type: ignore[misc]
    # the key is read from its variable when asked for, and never shows in a repr
    assert read_api_key(a, KEYS).reveal() == "key-of-a"
    assert "key-of-a" not in repr(a) + repr(accounts)


def test_the_variable_names_the_file_and_relative_paths_start_from_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    accounts = load_accounts({ACCOUNTS_FILE_ENV: "accounts.yaml", **KEYS})
    assert accounts.source == tmp_path / "accounts.yaml" and accounts.names == ("brand_a", "brand_b")


def test_the_example_in_the_repository_loads_and_shows_every_field():
    example = REPO / "accounts.yaml.example"
    keys = {"KLAVIYO_API_KEY_BRAND_A": "a", "KLAVIYO_API_KEY_BRAND_B": "b", "SEGMENTS_API_KEY_NEWSLETTER": "n"}
    accounts = read_accounts_file(example, keys)
    assert accounts.names == ("brand_a", "brand_b", "newsletter")
    assert accounts.on("segments_api").names == ("newsletter",)
    text = example.read_text()
    for field in [*AccountSettings.model_fields, *SegmentFilter.model_fields]:
        assert re.search(rf"^\s*(- )?{field}:.*#", text, re.MULTILINE), f"{field} is not shown with a comment"


def test_the_readme_table_lists_every_field():
    readme = (REPO / "docs" / "configuration.md").read_text()
    for field in [*AccountSettings.model_fields, *SegmentFilter.model_fields]:
        assert f"| `{field}`" in readme or f"| `segments.{field}`" in readme, field
    assert f"`{ACCOUNTS_FILE_ENV}`" in readme


def test_segments_all_and_a_single_glob(tmp_path):
    path = write(
        tmp_path,
        """\
        accounts:
          - {name: a, api_key_env: KEY_A, timezone: UTC, segments: all}
          - {name: b, api_key_env: KEY_B, timezone: UTC, segments: {name_matches: "vip*"}}
        """,
    )
    a, b = read_accounts_file(path, KEYS)
    assert a.segments == SegmentFilter() and b.segments.name_matches == ("vip*",)


def test_yaml_anchors_and_merge_keys_share_settings_between_accounts(tmp_path):
    path = write(
        tmp_path,
        """\
        accounts:
          - &brand {name: a, api_key_env: KEY_A, timezone: Pacific/Auckland, report_daily_limit: 100}
          - <<: *brand
            name: b
            api_key_env: KEY_B
          - <<: *brand
            name: c
            api_key_env: KEY_C
            lookback_day: 2
        """,
    )
    problem, text = only_problem(path)
    assert problem.line == 9 and "rename it to 'lookback_days'" in text and problem.where == "account 'c'"
    path.write_text(path.read_text().replace("    lookback_day: 2\n", ""))
    a, b, c = read_accounts_file(path, KEYS)
    assert (b.timezone, b.report_daily_limit, c.api_key_env) == ("Pacific/Auckland", 100, "KEY_C")


def test_an_accounts_client_carries_its_key_variable_rate_and_budget(tmp_path):
    # the single-account variables must not leak into (or break) an account that sets its own values
    env = {
        **KEYS,
        ACCOUNTS_FILE_ENV: str(write(tmp_path, GOOD)),
        "KLAVIYO_REPORT_RATE_PER_MINUTE": "junk",
        "KLAVIYO_REPORT_DAILY_LIMIT": "9",
        "KLAVIYO_TIMEOUT": "12.5",
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
    }
    settings = load_settings(env)
    client = KlaviyoAccess(settings, settings.accounts["brand_a"]).client()
    assert client.settings.api_key.reveal() == "key-of-a" and client.settings.api_key_variable == "KEY_A"
    assert (client.settings.report_rate_per_minute, client.settings.report_daily_limit) == (1.5, 150)
    assert client.settings.timeout_seconds == 12.5  # the shared settings still come from the environment


# -- the segment filter ---------------------------------------------------------------------------------------

ROWS = [
    {"id": "A", "name": "VIP customers", "is_active": True, "is_starred": True, "is_deleted": False},
    {"id": "B", "name": "vip – lapsed", "is_active": False, "is_starred": False, "is_deleted": False},
    {"id": "C", "name": "Newsletter", "is_active": True, "is_starred": False, "is_deleted": False},
    {"id": "D", "name": "Likely churners", "is_active": True, "is_starred": None, "is_deleted": False},
    {"id": "E", "name": None, "is_active": True, "is_starred": True, "is_deleted": True},
]


@pytest.mark.parametrize(
    ("segment_filter", "expected"),
    [
        (SegmentFilter(), "ABCDE"),
        (SegmentFilter(is_active=True), "ACDE"),
        (SegmentFilter(is_active=False), "B"),
        (SegmentFilter(is_starred=True), "AE"),  # None is not starred
        (SegmentFilter(is_starred=False), "BC"),  # ... and not unstarred either
        (SegmentFilter(name_matches=("VIP*",)), "AB"),  # case-insensitive, whole name
        (SegmentFilter(name_matches=("*churn*", "news?etter")), "CD"),
        (SegmentFilter(name_matches=("vip",)), ""),  # the whole name must match
        (SegmentFilter(is_active=True, name_matches=("vip*",)), "A"),  # every condition must hold
    ],
)
def test_the_filter_keeps_the_rows_that_pass_every_condition(segment_filter, expected):
    assert "".join(row["id"] for row in select_segments(ROWS, segment_filter)) == expected


# -- every refusal, with its line ----------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    path = write(tmp_path, "accounts:\n  - name: a\n    api_key_env: KEY_A\n   timezone: [UTC\n")
    problem, text = only_problem(path)
    assert problem.line == 4 and "not valid YAML" in text


def test_an_unknown_key_names_its_line_and_suggests_the_right_one(tmp_path):
    path = write(tmp_path, GOOD.replace("    lookback_days: 5\n", "    lookback_day: 5\n"))
    problem, text = only_problem(path)
    assert problem.line == 7 and "unknown key 'lookback_day'" in text and "rename it to 'lookback_days'" in text
    assert problem.where == "account 'brand_a'"


def test_an_unknown_key_inside_segments_lists_the_filter_keys(tmp_path):
    path = write(tmp_path, GOOD.replace("      is_active: true\n", "      active: true\n"))
    problem, text = only_problem(path)
    assert problem.line == 9 and "is_active, is_starred, name_matches" in text


def test_an_unknown_top_level_key_is_refused(tmp_path):
    problem, text = only_problem(write(tmp_path, GOOD + "default_timezone: UTC\n"))
    assert problem.line == 14 and "unknown key 'default_timezone'" in text


def test_a_missing_required_field_names_the_accounts_line(tmp_path):
    path = write(tmp_path, GOOD.replace("    timezone: US/Pacific\n", ""))
    problem, text = only_problem(path)
    assert problem.line == 11 and "the required key 'timezone' is missing" in text
    assert "IANA timezone" in problem.fix and problem.where == "account 'brand_b'"


def test_a_key_variable_missing_from_the_environment_is_refused_at_load(tmp_path):
    problem, text = only_problem(write(tmp_path, GOOD), {"KEY_A": "key-of-a", "KEY_B": "  "})
    assert problem.line == 12 and "KEY_B is not set" in text and "export" in problem.fix


def test_an_unknown_timezone_names_the_value_and_the_line(tmp_path):
    problem, text = only_problem(write(tmp_path, GOOD.replace("US/Pacific", "US/Pacifc")))
    assert problem.line == 13 and "'US/Pacifc' is not an IANA timezone name" in text


def test_a_duplicate_name_points_at_both_lines(tmp_path):
    problem, text = only_problem(write(tmp_path, GOOD.replace("name: brand_b", "name: brand_a")))
    assert problem.line == 11 and "already used by the account on line 2" in text


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("lookback_days: 5", "lookback_days: five", 7, "valid integer (it is 'five')"),
        ("report_daily_limit: 150", "report_daily_limit: '150'", 6, "valid integer (it is '150')"),
        ("report_rate_per_minute: 1.5", "report_rate_per_minute: yes", 5, "valid number (it is True)"),
        ("is_active: true", "is_active: 'true'", 9, "valid boolean"),
        ("is_active: true", "is_active:", 9, "it is empty"),
        ("name: brand_b", "name: 12", 11, "valid string (it is 12)"),
        ('name_matches: ["VIP*", "*churn*"]', "name_matches: {a: 1}", 10, "not a glob or a list of globs"),
        ('segments:\n      is_active: true\n      name_matches: ["VIP*", "*churn*"]', "segments: some", 8, "it is"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(tmp_path, old, new, line, fragment):
    assert old in GOOD
    problem, text = only_problem(write(tmp_path, GOOD.replace(old, new)))
    assert problem.line == line and fragment in text, text


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("report_daily_limit: 150", f"report_daily_limit: {REPORTS_RATE_LIMIT.per_day + 1}", 6, "225"),
        ("report_daily_limit: 150", "report_daily_limit: 0", 6, "from 1 to 225"),
        ("lookback_days: 5", f"lookback_days: {MAX_LOOKBACK_DAYS + 1}", 7, f"from 0 to {MAX_LOOKBACK_DAYS}"),
        ("lookback_days: 5", "lookback_days: -1", 7, "greater than or equal to 0"),
        ("report_rate_per_minute: 1.5", "report_rate_per_minute: 0", 5, "greater than 0"),
        ("lookback_days: 5", "lookback_days: 5\n    history_start: 2023-05-31", 8, "before Klaviyo's first day"),
        ("lookback_days: 5", "lookback_days: 5\n    history_start: June", 8, "'June' is not a date (YYYY-MM-DD)"),
    ],
)
def test_a_number_out_of_range_is_refused_with_the_allowed_range(tmp_path, old, new, line, fragment):
    problem, text = only_problem(write(tmp_path, GOOD.replace(old, new)))
    assert problem.line == line and fragment in text, text


@pytest.mark.parametrize("name", ["Brand_A", "brand-a", "1brand", "", "a" * 33])
def test_names_are_short_lower_case_identifiers(tmp_path, name):
    problem, text = only_problem(write(tmp_path, GOOD.replace("name: brand_b", f"name: '{name}'")))
    assert problem.line == 11 and problem.where == "account #2, name"


def test_a_key_written_in_the_file_is_refused_and_never_echoed(tmp_path):
    for text in (
        GOOD.replace("api_key_env: KEY_B", f"api_key_env: {PASTED_KEY}"),
        GOOD.replace("    api_key_env: KEY_B\n", f"    api_key_env: KEY_B\n    api_key: {PASTED_KEY}\n"),
        GOOD.replace('"*churn*"', f'"{PASTED_KEY}"'),
    ):
        error = problems_of(write(tmp_path, text))
        assert PASTED_KEY not in str(error) and "rotate" in str(error)
        assert [problem.line for problem in error.problems] in ([12], [13], [10])


def test_a_key_in_a_comment_a_mapping_key_or_a_broken_file_is_refused_and_never_echoed(tmp_path):
    for text, lines in (
        # a comment is still in the file: committed or shared, the key is out
        (GOOD.replace("    timezone: US/Pacific\n", f"    timezone: US/Pacific  # old key {PASTED_KEY}\n"), [13]),
        (f"# {PASTED_KEY}\n" + GOOD, [1]),
        (GOOD + f"# brand_c: {PASTED_KEY}\n", [14]),
        # as a mapping key (YAML's "unknown key" message would have echoed it)
        (GOOD.replace("    lookback_days: 5\n", f"    {PASTED_KEY}: 5\n"), [7]),
        # beside other problems: each is still named, the key only by its line
        (GOOD.replace("US/Pacific", "Nowhere/City") + f"# {PASTED_KEY}\n", [13, 14]),
        (f"# {PASTED_KEY}\naccounts: [\n", [1, 3]),
    ):
        error = problems_of(write(tmp_path, text))
        assert PASTED_KEY not in str(error) and "rotate" in str(error) and "comment" in str(error)
        assert [problem.line for problem in error.problems] == lines, str(error)


def test_a_key_holder_name_gets_a_plain_answer_even_for_a_short_key(tmp_path):
    path = write(tmp_path, GOOD.replace("    api_key_env: KEY_B\n", "    api_key_env: KEY_B\n    api_key: sekrit\n"))
    problem, text = only_problem(path)
    assert problem.line == 13 and "API keys never go in the accounts file" in text and "sekrit" not in text


def test_the_same_key_variable_or_key_for_two_accounts_is_refused(tmp_path):
    problem, text = only_problem(write(tmp_path, GOOD.replace("KEY_B", "KEY_A")))
    assert problem.line == 12 and "also the key variable of account 'brand_a'" in text
    problem, text = only_problem(write(tmp_path, GOOD), {"KEY_A": "shared-k3y", "KEY_B": "shared-k3y"})
    assert problem.line == 12 and "same key as KEY_A" in text and "shared-k3y" not in text


def test_a_key_written_twice_in_one_mapping_is_refused_not_silently_overridden(tmp_path):
    problem, text = only_problem(
        write(tmp_path, GOOD.replace("timezone: US/Pacific", "timezone: US/Pacific\n    timezone: UTC"))
    )
    assert problem.line == 14 and "written twice" in text and "first on line 13" in text


def test_every_problem_is_listed_at_once_in_line_order(tmp_path):
    text = GOOD.replace("US/Pacific", "Nowhere/City").replace("lookback_days: 5", "lookback_days: 500")
    error = problems_of(write(tmp_path, text))
    assert [problem.line for problem in error.problems] == [7, 13]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the file is empty"),
        ("- name: a\n", "not a mapping with `accounts:`"),
        ("accounts: []\n", "there are no accounts"),
        ("accounts:\n  - brand_a\n", "not a mapping of keys"),
    ],
)
def test_a_file_without_accounts_is_refused(tmp_path, text, fragment):
    problem, message = only_problem(write(tmp_path, text))
    assert fragment in message


def test_a_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(AccountsFileError, match="no such file.*accounts.yaml.example"):
        load_accounts({ACCOUNTS_FILE_ENV: str(tmp_path / "nope.yaml")})


# -- without the file: the single-account variables ------------------------------------------------------------


def test_without_the_file_the_single_account_variables_make_one_default_account():
    env = {
        "KLAVIYO_API_KEY": "the-key",
        "KLAVIYO_TIMEZONE": "Pacific/Auckland",
        "KLAVIYO_REPORT_RATE_PER_MINUTE": "1",
        "KLAVIYO_REPORT_DAILY_LIMIT": "100",
        "SERIES_LOOKBACK_DAYS": "7",
    }
    accounts = load_accounts(env)
    assert accounts == Accounts(
        (
            AccountSettings(
                name="default",
                api_key_env="KLAVIYO_API_KEY",
                timezone="Pacific/Auckland",
                report_rate_per_minute=1.0,
                report_daily_limit=100,
                lookback_days=7,
            ),
        ),
        None,
    )
    assert read_api_key(accounts["default"], env).reveal() == "the-key"


def test_without_any_variable_the_defaults_are_todays():
    (account,) = load_accounts({ACCOUNTS_FILE_ENV: "  "})
    assert (account.timezone, account.report_rate_per_minute, account.report_daily_limit, account.lookback_days) == (
        "UTC",
        REPORTS_RATE_LIMIT.per_minute,
        REPORTS_RATE_LIMIT.per_day,
        DEFAULT_LOOKBACK_DAYS,
    )
    assert account.segments.tracks_all
    # loading works without the key (a run needs it, and says so, as before)
    with pytest.raises(KlaviyoConfigError, match="KLAVIYO_API_KEY is not set"):
        read_api_key(account, {})


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("KLAVIYO_TIMEZONE", "Mars/Base", "KLAVIYO_TIMEZONE='Mars/Base'"),
        ("KLAVIYO_REPORT_RATE_PER_MINUTE", "fast", "RATE_PER_MINUTE='fast' cannot be read. Fix: write a number"),
        ("KLAVIYO_REPORT_RATE_PER_MINUTE", "0", "KLAVIYO_REPORT_RATE_PER_MINUTE='0'"),
        ("KLAVIYO_REPORT_DAILY_LIMIT", "500", "KLAVIYO_REPORT_DAILY_LIMIT='500'"),
        ("SERIES_LOOKBACK_DAYS", "60", "SERIES_LOOKBACK_DAYS='60'"),
        ("SERIES_LOOKBACK_DAYS", "1.5", "SERIES_LOOKBACK_DAYS='1.5' cannot be read. Fix: write a whole number"),
    ],
)
def test_a_bad_single_account_variable_is_named(variable, value, fragment):
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert fragment in str(caught.value) and not isinstance(caught.value, AccountsFileError)


MIXED = """\
accounts:
  - name: brand_a
    api_key_env: KEY_A
    timezone: Australia/Sydney
  - name: news
    platform: segments_api
    api_key_env: KEY_B
    timezone: Europe/Berlin
"""


def test_an_entry_names_its_platform_and_each_platform_gets_its_own(tmp_path):
    path = write(tmp_path, MIXED)
    env = {ACCOUNTS_FILE_ENV: str(path), **KEYS, "SEGMENTS_API_BASE_URL": "https://api.example.com"}
    settings = load_settings(env)
    assert settings.accounts.names == ("brand_a",)
    assert settings.segments_api_workspaces.names == ("news",)
    assert settings.segments_api_workspaces["news"].timezone == "Europe/Berlin"
    # with a file, the single-workspace variable is ignored like the single-account ones
    assert load_settings({**env, "SEGMENTS_API_KEY": "k"}).segments_api_workspaces.names == ("news",)
    with pytest.raises(ConfigError, match="SEGMENTS_API_BASE_URL is not set"):
        load_settings({ACCOUNTS_FILE_ENV: str(path), **KEYS})


def test_without_a_file_the_platform_is_on_when_its_key_is_set():
    assert load_settings({}).segments_api_workspaces.names == ()
    settings = load_settings(
        {
            "SEGMENTS_API_KEY": "k",
            "SEGMENTS_API_BASE_URL": "https://api.example.com",
            "SEGMENTS_API_TIMEZONE": "Asia/Tokyo",
        }
    )
    (workspace,) = settings.segments_api_workspaces
    assert (workspace.name, workspace.platform, workspace.timezone) == ("default", "segments_api", "Asia/Tokyo")
    assert workspace.api_key_env == "SEGMENTS_API_KEY" and "sak_secret_value_42" not in repr(settings)
    with pytest.raises(ConfigError, match="SEGMENTS_API_TIMEZONE='Mars/Base' is not an IANA timezone"):
        load_settings(
            {"SEGMENTS_API_KEY": "k", "SEGMENTS_API_BASE_URL": "https://x.test", "SEGMENTS_API_TIMEZONE": "Mars/Base"}
        )


def test_a_segments_api_entry_refuses_klaviyo_fields_and_unknown_platforms(tmp_path):
    text = MIXED + "    report_daily_limit: 100\n    history_start: 2025-01-01\n"
    error = problems_of(write(tmp_path, text))
    assert "report_daily_limit, history_start apply to Klaviyo accounts only, not to platform segments_api" in str(
        error
    )
    error = problems_of(write(tmp_path, MIXED.replace("segments_api", "hubspot")))
    assert ":6: account 'news', platform:" in str(error) and "klaviyo (the default) or segments_api" in str(error)
    error = problems_of(write(tmp_path, MIXED), {"KEY_A": "a"})
    assert "export this workspace's Segments API key as KEY_B" in str(error)
