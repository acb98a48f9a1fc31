"""The Klaviyo accounts a deployment pulls: read from an accounts file, or from the single-account variables.

The file is YAML, at the path in `KLAVIYO_ACCOUNTS_FILE` (see `accounts.yaml.example` and the README). Each
account names the environment variable that holds its key, never the key itself. Without the variable, the
single-account variables (`KLAVIYO_API_KEY`, `KLAVIYO_TIMEZONE`, `KLAVIYO_REPORT_RATE_PER_MINUTE`,
`KLAVIYO_REPORT_DAILY_LIMIT`, `SERIES_LOOKBACK_DAYS`) make a one-account setup named `default`, as before.

A file the pipeline cannot use fails when it is loaded, with one line per problem in the form
`<file>:<line>: <where>: <what is wrong>. Fix: <what to write>`, so nothing runs on a half-understood setup.
pydantic does the typed validation; the YAML nodes' marks map its error locations back to lines. No Dagster here.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import DEFAULT_LOOKBACK_DAYS, MAX_LOOKBACK_DAYS, ConfigError, configured_timezone
from .klaviyo.errors import KlaviyoConfigError
from .klaviyo.limits import REPORTS_RATE_LIMIT
from .klaviyo.settings import ApiKey, KlaviyoSettings

ACCOUNTS_FILE_ENV = "KLAVIYO_ACCOUNTS_FILE"
DEFAULT_ACCOUNT_NAME = "default"
SINGLE_ACCOUNT_KEY_ENV = "KLAVIYO_API_KEY"

# Klaviyo's reporting quota per account: an account's budget is a share of it, never more.
REPORTS_DAILY_QUOTA: int = REPORTS_RATE_LIMIT.per_day  # type: ignore[assignment]
MAX_NAME_LENGTH = 32
# names become parts of Dagster asset keys and partition names, which accept only these characters
_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Klaviyo private keys are "pk_" and a long run of letters and digits; a value of that shape is never echoed
_KEY_SHAPE = re.compile(r"pk_[A-Za-z0-9]{16,}")
# keys someone might write to put the key itself in the file
_KEY_HOLDER_NAMES = {"api_key", "key", "private_key", "klaviyo_api_key", "token", "secret", "password"}

_HINTS = {
    "accounts": "list the accounts under `accounts:`, one `- name: ...` entry each (see accounts.yaml.example)",
    "name": (
        f"use 1 to {MAX_NAME_LENGTH} lower-case letters, digits and underscores, starting with a letter and "
        "unique in the file (e.g. brand_a); it becomes part of asset keys and partition names"
    ),
    "api_key_env": (
        "write the NAME of the environment variable that holds this account's private API key "
        "(e.g. KLAVIYO_API_KEY_BRAND_A) and export the key in that variable; the key never goes in this file"
    ),
    "timezone": (
        "write the account's IANA timezone as Klaviyo shows it under Settings > Account "
        "(e.g. US/Eastern or Australia/Sydney)"
    ),
    "report_rate_per_minute": (
        f"write a number above 0: report requests a minute for this account (Klaviyo allows "
        f"{REPORTS_RATE_LIMIT.per_minute}; more only makes sense against the simulator's --speed)"
    ),
    "report_daily_limit": (
        f"write a whole number from 1 to {REPORTS_DAILY_QUOTA}: this account's share of Klaviyo's "
        f"{REPORTS_DAILY_QUOTA} report requests a day"
    ),
    "lookback_days": f"write a whole number of days from 0 to {MAX_LOOKBACK_DAYS}",
    "segments": "write `all`, or a mapping with any of is_active, is_starred and name_matches",
    "is_active": "write true or false",
    "is_starred": "write true or false",
    "name_matches": "write a glob such as 'VIP*' (case-insensitive), or a list of globs",
}


class AccountsFileError(ConfigError):
    """The accounts file cannot be used; `problems` holds one `FileProblem` per thing to fix."""

    def __init__(self, path: Path, problems: Iterable[FileProblem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        count = len(self.problems)
        heading = f"the accounts file {path} (from {ACCOUNTS_FILE_ENV}) has {count} problem{'s' * (count != 1)}:"
        super().__init__("\n".join([heading, *(f"  {problem.describe(path)}" for problem in self.problems)]))


@dataclass(frozen=True)
class FileProblem:
    """One thing wrong in the accounts file: its line (1-based; `None` for the file as a whole), where in the
    file, what is wrong, and the fix."""

    line: int | None
    where: str
    message: str
    fix: str

    def describe(self, path: Path) -> str:
        """`<file>:<line>: <where>: <what is wrong>. Fix: <what to do>`, the form editors and terminals link."""
        place = f"{path}:{self.line}:" if self.line is not None else f"{path}:"
        where = f" {self.where}:" if self.where else ""
        return f"{place}{where} {self.message}. Fix: {self.fix}"


def _shown(value: Any) -> str:
    """A value for an error message, unless it could be a key."""
    if isinstance(value, str) and _KEY_SHAPE.search(value):
        return "a value shaped like an API key (not shown)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class SegmentFilter(BaseModel):
    """Which of an account's segments to track. Every condition given must hold; none given tracks all.

    Attributes:
        is_active: Track only segments whose `is_active` is this value.
        is_starred: Track only segments whose `is_starred` is this value.
        name_matches: Track only segments whose name matches one of these shell-style globs (`*` any run
            of characters, `?` one character, `[abc]` one of a set), compared case-insensitively with the
            whole name. In the file: one glob or a list of them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_active: Annotated[bool | None, Field(strict=True)] = None
    is_starred: Annotated[bool | None, Field(strict=True)] = None
    name_matches: tuple[str, ...] = ()

    @field_validator("is_active", "is_starred", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        # `is_active:` with nothing after it is a slip, not "any": refuse it rather than track every segment
        if value is None:
            raise ValueError("it is empty")
        return value

    @field_validator("name_matches", mode="before")
    @classmethod
    def _globs(cls, value: Any) -> tuple[str, ...]:
        patterns = [value] if isinstance(value, str) else value
        if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"{_shown(value)} is not a glob or a list of globs")
        if not patterns:
            raise ValueError("it lists no glob, so no segment would be tracked")
        if not all(p.strip() for p in patterns):
            raise ValueError("it has an empty glob, which no segment name matches")
        return tuple(patterns)

    @property
    def tracks_all(self) -> bool:
        """Whether no condition is set, so every segment is tracked."""
        return self.is_active is None and self.is_starred is None and not self.name_matches

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether a segment row (shaped like a row of `klaviyo.segments`) passes every condition.

        A row missing a value a condition needs (e.g. `is_starred` is None) does not pass that condition.
        """
        if self.is_active is not None and row.get("is_active") is not self.is_active:
            return False
        if self.is_starred is not None and row.get("is_starred") is not self.is_starred:
            return False
        if self.name_matches:
            name = row.get("name")
            if not isinstance(name, str):
                return False
            folded = name.casefold()
            return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in self.name_matches)
        return True


def select_segments(rows: Iterable[Mapping[str, Any]], segment_filter: SegmentFilter) -> list[Mapping[str, Any]]:
    """The rows an account's filter tracks, in their order.

    Args:
        rows: Segment rows shaped like `klaviyo.segments` (`name`, `is_active`, `is_starred`, ...).
        segment_filter: The account's `segments` setting.

    Returns:
        The rows that pass the filter. Only `name`, `is_active` and `is_starred` are looked at: which rows are
        still live (`is_deleted`) stays the caller's decision.
    """
    return [row for row in rows if segment_filter.matches(row)]


class AccountSettings(BaseModel):
    """One Klaviyo account: everything the pipeline needs to pull it, except the key, which stays in the environment.

    Attributes:
        name: Short unique name ([a-z][a-z0-9_]*, at most 32 characters), for asset keys and partition names.
        api_key_env: Name of the environment variable holding the account's private API key.
        timezone: The account's IANA timezone; its days are the partitions of its series.
        report_rate_per_minute: Report requests a minute the client allows itself for this account.
        report_daily_limit: Report requests in any 24 hours, at most Klaviyo's daily quota.
        lookback_days: Days before the newest requested day a recent run pulls again.
        segments: Which segments to track (all by default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(strict=True)]
    api_key_env: Annotated[str, Field(strict=True)]
    timezone: Annotated[str, Field(strict=True)]
    report_rate_per_minute: Annotated[float, Field(strict=True, gt=0)] = float(REPORTS_RATE_LIMIT.per_minute)
    report_daily_limit: Annotated[int, Field(strict=True, ge=1, le=REPORTS_DAILY_QUOTA)] = REPORTS_DAILY_QUOTA
    lookback_days: Annotated[int, Field(strict=True, ge=0, le=MAX_LOOKBACK_DAYS)] = DEFAULT_LOOKBACK_DAYS
    segments: SegmentFilter = SegmentFilter()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{_shown(value)} is not a short name of the form [a-z][a-z0-9_]*")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, value: str) -> str:
        # never echo this value: someone may have pasted the key itself here
        if _KEY_SHAPE.search(value) or value.lower().startswith("pk_"):
            raise ValueError("this holds what looks like an API key itself (not shown), not a variable name")
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("this is not an environment variable name (letters, digits and underscores)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{_shown(value)} is not an IANA timezone name") from None
        return value

    @field_validator("segments", mode="before")
    @classmethod
    def _all_segments(cls, value: Any) -> Any:
        if value == "all":
            return {}
        if value is None:
            raise ValueError("it is empty")
        if not isinstance(value, dict | SegmentFilter):
            raise ValueError(f"it is {_shown(value)}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The account's timezone as a `ZoneInfo`."""
        return ZoneInfo(self.timezone)

    def api_key(self, env: Mapping[str, str] | None = None) -> ApiKey:
        """The account's key, read from `api_key_env` in the environment now (never stored on the settings).

        Raises:
            KlaviyoConfigError: If the variable is unset or empty (the client's error for a missing key).
        """
        env = os.environ if env is None else env
        key = (env.get(self.api_key_env) or "").strip()
        if not key:
            raise KlaviyoConfigError(
                f"{self.api_key_env} is not set, so account {self.name!r} has no API key: create a private API key "
                "in Klaviyo (Settings > API keys) with the read scopes segments:read and accounts:read, and export "
                f"it as {self.api_key_env}"
            )
        return ApiKey(key)

    def client_settings(self, env: Mapping[str, str] | None = None, **overrides: Any) -> KlaviyoSettings:
        """The client settings for this account: its key, rate and daily limit, the rest from the environment.

        Args:
            env: The environment (default `os.environ`).
            **overrides: Passed to `KlaviyoSettings.from_env`, e.g. a per-account `budget_path`.
        """
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {
            "api_key": self.api_key(env),
            "report_rate_per_minute": self.report_rate_per_minute,
            "report_daily_limit": self.report_daily_limit,
        }
        # the account's own values win over the single-account variables, which may hold anything
        for name in ("KLAVIYO_REPORT_RATE_PER_MINUTE", "KLAVIYO_REPORT_DAILY_LIMIT"):
            env.pop(name, None)
        return KlaviyoSettings.from_env(env, **{**values, **overrides})


class _AccountsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accounts: Annotated[list[AccountSettings], Field(min_length=1)]


@dataclass(frozen=True)
class Accounts:
    """The accounts of a deployment, in the order they were written.

    Attributes:
        accounts: One settings object per account.
        source: The accounts file they came from, or `None` for the single-account variables.
    """

    accounts: tuple[AccountSettings, ...]
    source: Path | None = None

    def __iter__(self) -> Iterator[AccountSettings]:
        return iter(self.accounts)

    def __len__(self) -> int:
        return len(self.accounts)

    @property
    def names(self) -> tuple[str, ...]:
        """The accounts' names, in order."""
        return tuple(account.name for account in self.accounts)

    def __getitem__(self, name: str) -> AccountSettings:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account named {name!r}; the accounts are {', '.join(self.names)}")


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


def single_account_from_env(env: Mapping[str, str] | None = None) -> Accounts:
    """The one account the single-account variables describe, named `default`.

    Its key is read from `KLAVIYO_API_KEY` when a run starts (as before), so loading works without it.

    Raises:
        ConfigError: A variable has a value the pipeline cannot use; the message names it.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {
        "name": DEFAULT_ACCOUNT_NAME,
        "api_key_env": SINGLE_ACCOUNT_KEY_ENV,
        "timezone": configured_timezone(dict(env)),
    }
    variables = {
        "report_rate_per_minute": ("KLAVIYO_REPORT_RATE_PER_MINUTE", float),
        "report_daily_limit": ("KLAVIYO_REPORT_DAILY_LIMIT", int),
        "lookback_days": ("SERIES_LOOKBACK_DAYS", int),
    }
    for field, (variable, cast) in variables.items():
        raw = (env.get(variable) or "").strip()
        if not raw:
            continue
        try:
            values[field] = cast(raw)
        except ValueError:
            kind = "a number" if cast is float else "a whole number"
            raise ConfigError(f"{variable}={raw!r} is not {kind}. Fix: {_HINTS[field]}") from None
    try:
        account = AccountSettings.model_validate(values)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = str(first["loc"][0])
        variable = variables[field][0] if field in variables else "KLAVIYO_TIMEZONE"
        raise ConfigError(f"{variable}={env.get(variable)!r}: {first['msg']}. Fix: {_HINTS[field]}") from None
    return Accounts((account,), None)


def read_accounts_file(path: Path, env: Mapping[str, str] | None = None) -> Accounts:
    """Read and check an accounts file, including that every account's key variable is set in `env`.

    Raises:
        AccountsFileError: Listing every problem found, each with its line and its fix.
    """
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AccountsFileError(
            path,
            [
                FileProblem(
                    None, "", "there is no such file", "create it (copy accounts.yaml.example) or unset the variable"
                )
            ],
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountsFileError(path, [FileProblem(None, "", f"it cannot be read ({exc})", "check the path")]) from None
    data, lines = _parse(path, text)
    if data is None:
        raise AccountsFileError(path, [FileProblem(1, "", "the file is empty", _HINTS["accounts"])])
    if not isinstance(data, dict):
        raise AccountsFileError(
            path, [FileProblem(1, "", "the file is not a mapping with `accounts:`", _HINTS["accounts"])]
        )
    problems = list(_key_shaped_values(data, lines))
    try:
        parsed = _AccountsFile.model_validate(data)
    except ValidationError as error:
        # a pasted key is reported once, by the scan above, with the advice to rotate it
        key_lines = {problem.line for problem in problems}
        for item in error.errors(include_url=False):
            problem = _pydantic_problem(item, data, lines)
            if problem.line not in key_lines:
                problems.append(problem)
        raise AccountsFileError(path, _in_line_order(problems)) from None
    problems += _cross_account_problems(parsed.accounts, lines, env)
    if problems:
        raise AccountsFileError(path, _in_line_order(problems))
    return Accounts(tuple(parsed.accounts), path)


# -- YAML with line numbers ---------------------------------------------------------------------------------

Location = tuple[Any, ...]


def _parse(path: Path, text: str) -> tuple[Any, dict[Location, int]]:
    """The file's data and, for every mapping key and list item, the line it is written on."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Location, int] = {}
        duplicates: list[FileProblem] = []
        _record_lines(loader, node, (), lines, duplicates, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        fix = "check the indentation, the colons after keys and the quotes near this line"
        raise AccountsFileError(path, [FileProblem(line, "", f"this is not valid YAML: {problem}", fix)]) from None
    except yaml.YAMLError as exc:
        raise AccountsFileError(
            path, [FileProblem(None, "", f"this is not valid YAML: {exc}", "fix the YAML")]
        ) from None
    finally:
        loader.dispose()
    if duplicates:
        raise AccountsFileError(path, duplicates)
    return data, lines


def _record_lines(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    location: Location,
    lines: dict[Location, int],
    duplicates: list[FileProblem],
    seen: set[int],
) -> None:
    if id(node) in seen:  # an alias: its lines were recorded where the anchor is
        return
    seen.add(id(node))
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # merged or complex keys: errors inside them point at the mapping
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                # PyYAML would silently keep only the last value: refuse, a doubled key is always a mistake
                duplicates.append(
                    FileProblem(
                        line,
                        _where(location + (key,), None),
                        f"{key!r} is written twice in the same mapping (first on line {first_line[key]})",
                        "keep one of them",
                    )
                )
                continue
            first_line[key] = line
            lines[location + (key,)] = line
            _record_lines(loader, value_node, location + (key,), lines, duplicates, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(loader, item, location + (index,), lines, duplicates, seen)


def _line(location: Location, lines: Mapping[Location, int]) -> int:
    """The line of a location, or of the nearest enclosing one that is written in the file."""
    for end in range(len(location), -1, -1):
        if location[:end] in lines:
            return lines[location[:end]]
    return 1


def _where(location: Location, data: Any) -> str:
    """A location as a person reads it: "account 'brand_a', segments.is_active"."""
    if len(location) >= 2 and location[0] == "accounts" and isinstance(location[1], int):
        index = location[1]
        name = None
        if isinstance(data, dict) and isinstance(data.get("accounts"), list) and index < len(data["accounts"]):
            entry = data["accounts"][index]
            name = entry.get("name") if isinstance(entry, dict) else None
        label = f"account {name!r}" if isinstance(name, str) and _NAME.fullmatch(name) else f"account #{index + 1}"
        rest = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in location[2:])
        return f"{label}, {rest}" if rest else label
    return ".".join(str(part) for part in location)


def _in_line_order(problems: list[FileProblem]) -> list[FileProblem]:
    return sorted(problems, key=lambda problem: problem.line or 0)


# -- problems -------------------------------------------------------------------------------------------------


def _key_shaped_values(data: Any, lines: Mapping[Location, int], location: Location = ()) -> Iterator[FileProblem]:
    """Every value in the file shaped like a Klaviyo private key: keys belong in the environment only."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _key_shaped_values(value, lines, location + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _key_shaped_values(value, lines, location + (index,))
    elif isinstance(data, str) and _KEY_SHAPE.search(data):
        yield FileProblem(
            _line(location, lines),
            "",
            "this line holds what looks like a Klaviyo private API key; keys never go in the accounts file",
            "delete it, export the key in an environment variable and write that variable's name as api_key_env "
            "(and rotate the key in Klaviyo if this file was shared or committed)",
        )


def _field(location: Location) -> str | None:
    for part in reversed(location):
        if isinstance(part, str) and part in _HINTS:
            return part
    return None


def _allowed_keys(location: Location) -> tuple[str, ...]:
    if len(location) <= 1:
        return tuple(_AccountsFile.model_fields)
    if len(location) >= 3 and location[2] == "segments":
        return tuple(SegmentFilter.model_fields)
    return tuple(AccountSettings.model_fields)


def _pydantic_problem(error: Any, data: Any, lines: Mapping[Location, int]) -> FileProblem:
    location: Location = tuple(error["loc"])
    kind = error["type"]
    line = _line(location, lines)
    if kind == "extra_forbidden":
        key = location[-1]
        where = _where(location[:-1], data)
        if str(key).lower() in _KEY_HOLDER_NAMES:
            return FileProblem(
                line,
                where,
                f"unknown key {key!r}: API keys never go in the accounts file",
                "delete this line, export the key in an environment variable and write that variable's name as "
                "api_key_env (and rotate the key in Klaviyo if this file was shared or committed)",
            )
        allowed = _allowed_keys(location[:-1])
        close = difflib.get_close_matches(str(key), allowed, n=1)
        fix = f"rename it to {close[0]!r}; " if close else ""
        return FileProblem(line, where, f"unknown key {key!r}", f"{fix}the keys allowed here are {', '.join(allowed)}")
    field = _field(location)
    hint = _HINTS.get(field or "", "see accounts.yaml.example")
    where = _where(location, data)
    if kind == "missing":
        missing = location[-1]
        return FileProblem(line, _where(location[:-1], data), f"the required key {missing!r} is missing", hint)
    if kind == "value_error":
        return FileProblem(line, where, str(error["ctx"]["error"]), hint)
    if kind == "too_short" and field == "accounts":
        return FileProblem(line, where, "there are no accounts", hint)
    if kind in ("model_type", "dict_type"):
        return FileProblem(
            line,
            where,
            "this is not a mapping of keys",
            "write each account as `- name: ...` followed by its other `key: value` lines, lined up with `name`",
        )
    # type and range errors; the value is shown unless it is the key variable (which may hold a pasted key)
    shown = "" if field == "api_key_env" else f" (it is {_shown(error.get('input'))})"
    message = str(error["msg"])
    message = message[0].lower() + message[1:] if message else kind
    return FileProblem(line, where, f"{message}{shown}", hint)


def _cross_account_problems(
    accounts: list[AccountSettings], lines: Mapping[Location, int], env: Mapping[str, str]
) -> list[FileProblem]:
    """Duplicate names, shared key variables or keys, and key variables missing from the environment."""
    problems: list[FileProblem] = []
    by_name: dict[str, int] = {}
    by_variable: dict[str, int] = {}
    by_key: dict[str, int] = {}
    for index, account in enumerate(accounts):
        where = f"account #{index + 1}"
        name_line = _line(("accounts", index, "name"), lines)
        variable_line = _line(("accounts", index, "api_key_env"), lines)
        if account.name in by_name:
            first = by_name[account.name]
            problems.append(
                FileProblem(
                    name_line,
                    where,
                    f"the name {account.name!r} is already used by the account on line "
                    f"{_line(('accounts', first, 'name'), lines)}",
                    "give every account its own name: names key its assets, partitions and rows",
                )
            )
        else:
            by_name[account.name] = index
        if account.api_key_env in by_variable:
            other = accounts[by_variable[account.api_key_env]]
            problems.append(
                FileProblem(
                    variable_line,
                    f"account {account.name!r}",
                    f"api_key_env {account.api_key_env} is also the key variable of account {other.name!r}",
                    "one Klaviyo account per entry: give each account the variable holding its own key",
                )
            )
            continue
        by_variable[account.api_key_env] = index
        key = (env.get(account.api_key_env) or "").strip()
        if not key:
            problems.append(
                FileProblem(
                    variable_line,
                    f"account {account.name!r}",
                    f"the environment variable {account.api_key_env} is not set",
                    f"export this account's private API key (read scopes segments:read and accounts:read) as "
                    f"{account.api_key_env} before starting the pipeline",
                )
            )
        elif key in by_key:
            other = accounts[by_key[key]]
            problems.append(
                FileProblem(
                    variable_line,
                    f"account {account.name!r}",
                    f"{account.api_key_env} holds the same key as {other.api_key_env} (account {other.name!r}), "
                    "so both entries are the same Klaviyo account and would share one quota",
                    "remove one entry, or put this account's own key in its variable",
                )
            )
        else:
            by_key[key] = index
    return problems


__all__ = [
    "ACCOUNTS_FILE_ENV",
    "DEFAULT_ACCOUNT_NAME",
    "Accounts",
    "AccountSettings",
    "AccountsFileError",
    "FileProblem",
    "SegmentFilter",
    "load_accounts",
    "read_accounts_file",
    "select_segments",
    "single_account_from_env",
]
