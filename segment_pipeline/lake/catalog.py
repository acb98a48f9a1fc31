"""The lake's PostgreSQL catalog: where it is (host, port, database, user), never its password.

A lake is named by a libpq connection string after `ducklake:postgres:`, e.g.
`ducklake:postgres:dbname=lake host=db.internal port=5432 user=pipeline`, or by a URI
(`ducklake:postgres:postgresql://pipeline@db.internal:5432/lake`). The password is never part of it: DuckDB
writes the connection string into its error messages and into `duckdb_databases()`, so a password there would
end up in logs. libpq reads it from the environment instead (`PGPASSWORD`, or a password file named by
`PGPASSFILE`, default `~/.pgpass`), in the pipeline, in dbt and in an analyst's DuckDB alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

LAKE_PREFIX = "ducklake:postgres:"
DEFAULT_PORT = 5432
# libpq waits as long as the operating system does for a host that does not answer; a stuck attach should end
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
# bounds on what a setting may carry into SQL and connection strings
_KEYWORD = re.compile(r"[a-z_]{1,40}")
_MAX_VALUE_LENGTH = 500
_SECRET_KEYWORDS = {"password", "passfile"}
_OWN_KEYWORDS = {"dbname", "host", "hostaddr", "port", "user"}


class CatalogSettingError(ValueError):
    """The catalog connection string cannot be used; the message says why and what to write instead."""


@dataclass(frozen=True)
class PostgresCatalog:
    """A PostgreSQL database holding a DuckLake catalog, as a libpq connection without the password."""

    dbname: str
    host: str
    user: str
    port: int = DEFAULT_PORT
    # other libpq keywords (sslmode, sslrootcert, connect_timeout, application_name, ...), in order
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("dbname", "host", "user"):
            value = getattr(self, name)
            if not value:
                raise CatalogSettingError(f"the lake's catalog needs {name}=... in its connection string")
            _check_value(name, value)
        if not 0 < self.port < 65536:
            raise CatalogSettingError(f"port={self.port} is not a TCP port")
        for key, value in self.options:
            _check_keyword(key)
            _check_value(key, value)

    @classmethod
    def parse(cls, text: str) -> PostgresCatalog:
        """A catalog from `ducklake:postgres:<libpq string or URI>` or from the part after the prefix."""
        if text.startswith(LAKE_PREFIX):
            text = text[len(LAKE_PREFIX) :]
        text = text.strip()
        pairs = _uri_pairs(text) if text.startswith(("postgres://", "postgresql://")) else _keyword_pairs(text)
        values = dict(pairs)
        secret = _SECRET_KEYWORDS & values.keys()
        if secret:
            raise CatalogSettingError(
                f"the lake's catalog connection string contains {sorted(secret)[0]}=...: remove it and set the "
                "password in PGPASSWORD (or in a password file named by PGPASSFILE, ~/.pgpass by default). "
                "DuckDB repeats the connection string in its messages, so a password there would reach the logs."
            )
        raw_port = values.get("port") or str(DEFAULT_PORT)
        if not raw_port.isdigit():
            raise CatalogSettingError(f"port={raw_port!r} in the lake's catalog connection string is not a number")
        host = values.get("host") or values.get("hostaddr") or ""
        options = [(key, value) for key, value in pairs if key not in _OWN_KEYWORDS]
        if not any(key == "connect_timeout" for key, _ in options):
            options.append(("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT_SECONDS)))
        return cls(
            dbname=values.get("dbname", ""),
            host=host,
            user=values.get("user", ""),
            port=int(raw_port),
            options=tuple(options),
        )

    def libpq(self) -> str:
        """The libpq connection string (`dbname=... host=... port=... user=... ...`), without a password."""
        pairs = [("dbname", self.dbname), ("host", self.host), ("port", str(self.port)), ("user", self.user)]
        return " ".join(f"{key}={_quote(value)}" for key, value in [*pairs, *self.options])

    def url(self) -> str:
        """The lake setting: `ducklake:postgres:<libpq string>`."""
        return LAKE_PREFIX + self.libpq()

    def describe(self) -> str:
        """`user@host:port/dbname`, for messages."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


def _check_keyword(key: str) -> None:
    if not _KEYWORD.fullmatch(key):
        raise CatalogSettingError(f"{key!r} is not a libpq connection keyword")


def _check_value(key: str, value: str) -> None:
    if len(value) > _MAX_VALUE_LENGTH or any(ord(character) < 32 for character in value):
        raise CatalogSettingError(f"the value of {key} in the lake's catalog connection string is not usable")


def _quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _keyword_pairs(text: str) -> list[tuple[str, str]]:
    """libpq's `keyword=value` form: values may be single-quoted, with backslash escapes."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return pairs
        match = re.compile(r"([A-Za-z_]+)\s*=\s*").match(text, position)
        if not match:
            raise CatalogSettingError(
                "the lake's catalog must be a libpq connection string such as "
                f"'{LAKE_PREFIX}dbname=lake host=127.0.0.1 port=5432 user=pipeline' (could not read "
                f"{text[position : position + 20]!r})"
            )
        key = match.group(1).lower()
        _check_keyword(key)
        position = match.end()
        value_chars: list[str] = []
        if position < len(text) and text[position] == "'":
            position += 1
            while True:
                if position >= len(text):
                    raise CatalogSettingError(f"the quoted value of {key} is not closed")
                character = text[position]
                if character == "\\" and position + 1 < len(text):
                    value_chars.append(text[position + 1])
                    position += 2
                elif character == "'":
                    position += 1
                    break
                else:
                    value_chars.append(character)
                    position += 1
        else:
            while position < len(text) and not text[position].isspace():
                if text[position] == "\\" and position + 1 < len(text):
                    position += 1
                value_chars.append(text[position])
                position += 1
        pairs.append((key, "".join(value_chars)))


def _uri_pairs(text: str) -> list[tuple[str, str]]:
    """libpq's URI form, `postgresql://user@host:port/dbname?keyword=value`."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError as exc:
        raise CatalogSettingError("the port in the lake's catalog URI is not a number") from exc
    pairs: list[tuple[str, str]] = []
    if parts.password is not None:
        pairs.append(("password", ""))
    for key, value in (
        ("dbname", unquote(parts.path.lstrip("/"))),
        ("host", unquote(parts.hostname or "")),
        ("port", str(port) if port else ""),
        ("user", unquote(parts.username or "")),
    ):
        if value:
            pairs.append((key, value))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        _check_keyword(key.lower())
        pairs.append((key.lower(), value))
    return pairs
