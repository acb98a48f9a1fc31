"""Reading the accounts file: every problem found at once, each with its line and its fix.

`read_accounts_file` parses the YAML with the line of everything in it (`yaml_lines`), lets pydantic check the
types and ranges (`settings`), translates pydantic's error locations into lines and plain messages, and then
checks what spans accounts: duplicate names, shared keys, and key variables missing from the environment.
Text shaped like a Klaviyo private key is refused wherever it is, comments included, and never echoed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import ConfigError
from .settings import (
    ACCOUNTS_FILE_ENV,
    FIELD_HINTS,
    KEY_HOLDER_NAMES,
    KEY_SHAPE,
    NAME_PATTERN,
    Accounts,
    AccountSettings,
    AccountsFileModel,
    SegmentFilter,
    shown,
)
from .yaml_lines import LinedYaml, Location, YamlSyntaxError, parse_with_lines


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


def read_accounts_file(path: Path, env: Mapping[str, str]) -> Accounts:
    """Read and check an accounts file, including that every account's key variable is set in `env`.

    Raises:
        AccountsFileError: Listing every problem found, each with its line and its fix.
    """
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
    # a pasted key is refused wherever it is, comments included, and named once, by its line only
    key_lines = _key_shaped_lines(text)

    def refused(problems: Iterable[FileProblem]) -> AccountsFileError:
        # a problem on a line holding a key could echo it: that line is reported as holding a key instead
        others = [problem for problem in problems if problem.line not in key_lines]
        return AccountsFileError(path, _in_line_order([*map(_key_problem, sorted(key_lines)), *others]))

    try:
        document = parse_with_lines(text)
    except YamlSyntaxError as error:
        fix = "check the indentation, the colons after keys and the quotes near this line"
        raise refused([FileProblem(error.line, "", f"this is not valid YAML: {error.problem}", fix)]) from None
    if document.duplicates:
        # PyYAML would silently keep only the last value: refuse, a doubled key is always a mistake
        raise refused(
            FileProblem(
                duplicate.line,
                _where(duplicate.location, None),
                f"{duplicate.location[-1]!r} is written twice in the same mapping "
                f"(first on line {duplicate.first_line})",
                "keep one of them",
            )
            for duplicate in document.duplicates
        )
    data = document.data
    if data is None:
        raise refused([FileProblem(1, "", "the file is empty", FIELD_HINTS["accounts"])])
    if not isinstance(data, dict):
        raise refused([FileProblem(1, "", "the file is not a mapping with `accounts:`", FIELD_HINTS["accounts"])])
    try:
        parsed = AccountsFileModel.model_validate(data)
    except ValidationError as error:
        raise refused(_pydantic_problem(item, data, document) for item in error.errors(include_url=False)) from None
    problems = _cross_account_problems(parsed.accounts, document, env)
    if problems or key_lines:
        raise refused(problems)
    return Accounts(tuple(parsed.accounts), path)


def _where(location: Location, data: Any) -> str:
    """A location as a person reads it: "account 'brand_a', segments.is_active"."""
    if len(location) >= 2 and location[0] == "accounts" and isinstance(location[1], int):
        index = location[1]
        name = None
        if isinstance(data, dict) and isinstance(data.get("accounts"), list) and index < len(data["accounts"]):
            entry = data["accounts"][index]
            name = entry.get("name") if isinstance(entry, dict) else None
        label = (
            f"account {name!r}" if isinstance(name, str) and NAME_PATTERN.fullmatch(name) else f"account #{index + 1}"
        )
        rest = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in location[2:])
        return f"{label}, {rest}" if rest else label
    return ".".join(str(part) for part in location)


def _in_line_order(problems: list[FileProblem]) -> list[FileProblem]:
    return sorted(problems, key=lambda problem: problem.line or 0)


# -- problems -------------------------------------------------------------------------------------------------


def _key_shaped_lines(text: str) -> set[int]:
    """The lines (1-based) holding text shaped like a Klaviyo private key, in values, keys and comments alike."""
    return {number for number, line in enumerate(text.splitlines(), start=1) if KEY_SHAPE.search(line)}


def _key_problem(line: int) -> FileProblem:
    return FileProblem(
        line,
        "",
        "this line holds what looks like a Klaviyo private API key; keys never go in the accounts file, "
        "not even in a comment",
        "delete it, export the key in an environment variable and write that variable's name as api_key_env "
        "(and rotate the key in Klaviyo if this file was shared or committed)",
    )


def _field(location: Location) -> str | None:
    for part in reversed(location):
        if isinstance(part, str) and part in FIELD_HINTS:
            return part
    return None


def _allowed_keys(location: Location) -> tuple[str, ...]:
    if len(location) <= 1:
        return tuple(AccountsFileModel.model_fields)
    if len(location) >= 3 and location[2] == "segments":
        return tuple(SegmentFilter.model_fields)
    return tuple(AccountSettings.model_fields)


def _pydantic_problem(error: Any, data: Any, document: LinedYaml) -> FileProblem:
    location: Location = tuple(error["loc"])
    kind = error["type"]
    line = document.line_of(location)
    if kind == "extra_forbidden":
        key = location[-1]
        where = _where(location[:-1], data)
        if str(key).lower() in KEY_HOLDER_NAMES:
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
    hint = FIELD_HINTS.get(field or "", "see accounts.yaml.example")
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
    value = "" if field == "api_key_env" else f" (it is {shown(error.get('input'))})"
    message = str(error["msg"])
    message = message[0].lower() + message[1:] if message else kind
    return FileProblem(line, where, f"{message}{value}", hint)


def _cross_account_problems(
    accounts: list[AccountSettings], document: LinedYaml, env: Mapping[str, str]
) -> list[FileProblem]:
    """Duplicate names, shared key variables or keys, and key variables missing from the environment."""
    problems: list[FileProblem] = []
    by_name: dict[str, int] = {}
    by_variable: dict[str, int] = {}
    by_key: dict[str, int] = {}
    for index, account in enumerate(accounts):
        where = f"account #{index + 1}"
        name_line = document.line_of(("accounts", index, "name"))
        variable_line = document.line_of(("accounts", index, "api_key_env"))
        if account.name in by_name:
            first = by_name[account.name]
            problems.append(
                FileProblem(
                    name_line,
                    where,
                    f"the name {account.name!r} is already used by the account on line "
                    f"{document.line_of(('accounts', first, 'name'))}",
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
                    (
                        "export this account's private API key (read scopes segments:read and accounts:read) as "
                        if account.is_klaviyo
                        else "export this workspace's Segments API key as "
                    )
                    + f"{account.api_key_env} before starting the pipeline",
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
