"""The Klaviyo accounts a deployment pulls: read from an accounts file, or from the single-account variables.

The file is YAML, at the path in `KLAVIYO_ACCOUNTS_FILE` (see `accounts.yaml.example` and the README). Each
account names the environment variable that holds its key, never the key itself. Without the variable, the
single-account variables (`KLAVIYO_API_KEY`, `KLAVIYO_TIMEZONE`, `KLAVIYO_REPORT_RATE_PER_MINUTE`,
`KLAVIYO_REPORT_DAILY_LIMIT`, `SERIES_LOOKBACK_DAYS`) make a one-account setup named `default`, as before.

A file the pipeline cannot use fails when it is loaded, with one line per problem in the form
`<file>:<line>: <where>: <what is wrong>. Fix: <what to write>`, so nothing runs on a half-understood setup.
pydantic does the typed validation (`settings`); the YAML nodes' marks map its error locations back to lines
(`yaml_lines`, `file`); `environment` is the single-account fallback. No Dagster here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..config import DEFAULT_ACCOUNT_NAME
from .environment import single_account_from_env
from .file import AccountsFileError, FileProblem, read_accounts_file
from .settings import (
    ACCOUNTS_FILE_ENV,
    REPORTS_DAILY_QUOTA,
    SINGLE_ACCOUNT_KEY_ENV,
    Accounts,
    AccountSettings,
    SegmentFilter,
    select_segments,
)


def load_accounts(env: Mapping[str, str] | None = None) -> Accounts:
    """The deployment's accounts: from the file at `KLAVIYO_ACCOUNTS_FILE`, else the single-account variables.

    Args:
        env: The environment (default `os.environ`).

    Raises:
        AccountsFileError: The file is missing or has problems (every one is listed, with its line).
        ConfigError: A single-account variable has a value the pipeline cannot use.
    """
    env = os.environ if env is None else env
    raw_path = (env.get(ACCOUNTS_FILE_ENV) or "").strip()
    if raw_path:
        return read_accounts_file(Path(raw_path).expanduser().resolve(), env)
    return single_account_from_env(env)


__all__ = [
    "ACCOUNTS_FILE_ENV",
    "DEFAULT_ACCOUNT_NAME",
    "REPORTS_DAILY_QUOTA",
    "SINGLE_ACCOUNT_KEY_ENV",
    "AccountSettings",
    "Accounts",
    "AccountsFileError",
    "FileProblem",
    "SegmentFilter",
    "load_accounts",
    "read_accounts_file",
    "select_segments",
    "single_account_from_env",
]
