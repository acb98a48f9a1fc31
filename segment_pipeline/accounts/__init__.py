"""The Klaviyo accounts of a deployment: their settings, the accounts file, and which segments each tracks.

The file is YAML, at the path in `KLAVIYO_ACCOUNTS_FILE` (see `accounts.yaml.example` and
docs/configuration.md). Each account names the environment variable that holds its key, never the key itself.
`segment_pipeline.settings` reads the file (or, without one, makes the one account `default` of the
single-account variables) through the models here.

A file the pipeline cannot use fails when it is loaded, with one line per problem in the form
`<file>:<line>: <where>: <what is wrong>. Fix: <what to write>`, so nothing runs on a half-understood setup.
pydantic does the typed validation (`settings`); the YAML nodes' marks map its error locations back to lines
(`yaml_lines`, `file`). No Dagster here.
"""

from __future__ import annotations

from .file import AccountsFileError, FileProblem, read_accounts_file
from .settings import (
    REPORTS_DAILY_QUOTA,
    SINGLE_ACCOUNT_KEY_ENV,
    Accounts,
    AccountSettings,
    SegmentFilter,
    select_segments,
)

__all__ = [
    "REPORTS_DAILY_QUOTA",
    "SINGLE_ACCOUNT_KEY_ENV",
    "AccountSettings",
    "Accounts",
    "AccountsFileError",
    "FileProblem",
    "SegmentFilter",
    "read_accounts_file",
    "select_segments",
]
