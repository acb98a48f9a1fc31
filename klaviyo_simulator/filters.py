"""A parser for Klaviyo's `filter` expressions.

For example `and(equals(name,"VIP"),greater-than(updated,2024-01-01T00:00:00Z))`.

Grammar (the subset the segment endpoints use):

    filter     := expression ("," expression)*          top-level commas mean AND, like and(...)
    expression := operator "(" field "," value ")"  |  "and(" expression ("," expression)* ")"
    value      := string | list | bare
    string     := '"' ... '"'  |  "'" ... "'"           backslash escapes the next character
    list       := "[" (value ("," value)*)? "]"
    bare       := true | false | null | a number | an ISO 8601 date-time

The parser only builds conditions; what fields and operators an endpoint allows is checked by the caller.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

_BARE_TOKEN = re.compile(r"[^,()\[\]\s]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class FilterSyntaxError(ValueError):
    """The filter string is not a well-formed expression."""


@dataclass(frozen=True)
class Condition:
    """One `operator(field,value)` term."""

    operator: str
    field: str
    value: Any


def parse_filter(text: str) -> list[Condition]:
    """Parse a filter string into the list of ANDed conditions.

    Args:
        text: The raw `filter` value.

    Returns:
        The conditions, in order.

    Raises:
        FilterSyntaxError: If the text is not a well-formed filter.
    """
    parser = _Parser(text)
    conditions = parser.expressions()
    parser.skip_space()
    if not parser.at_end():
        raise FilterSyntaxError(f"unexpected text at position {parser.pos}: {text[parser.pos : parser.pos + 20]!r}")
    return conditions


def parse_datetime_value(value: Any) -> dt.datetime:
    """Interpret a filter value as a timezone-aware date-time (naive values are taken as UTC).

    Args:
        value: A string or datetime from a parsed condition.

    Returns:
        An aware datetime.

    Raises:
        FilterSyntaxError: If the value is not a date-time.
    """
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise FilterSyntaxError(f"{value!r} is not an ISO 8601 date-time") from exc
    else:
        raise FilterSyntaxError(f"{value!r} is not a date-time")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_space(self) -> None:
        while not self.at_end() and self.text[self.pos].isspace():
            self.pos += 1

    def expect(self, char: str) -> None:
        self.skip_space()
        if self.at_end() or self.text[self.pos] != char:
            found = "end of filter" if self.at_end() else repr(self.text[self.pos])
            raise FilterSyntaxError(f"expected {char!r} at position {self.pos}, found {found}")
        self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return "" if self.at_end() else self.text[self.pos]

    def name(self) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise FilterSyntaxError(f"expected a name at position {self.pos}")
        self.pos = match.end()
        return match.group(0)

    def expressions(self) -> list[Condition]:
        conditions = self.expression()
        while self.peek() == ",":
            self.pos += 1
            conditions.extend(self.expression())
        return conditions

    def expression(self) -> list[Condition]:
        operator = self.name()
        self.expect("(")
        if operator == "and":
            conditions = self.expressions()
            self.expect(")")
            return conditions
        field = self.name()
        self.expect(",")
        value = self.value()
        self.expect(")")
        return [Condition(operator=operator, field=field, value=value)]

    def value(self) -> Any:
        char = self.peek()
        if char in ('"', "'"):
            return self.string(char)
        if char == "[":
            self.pos += 1
            items: list[Any] = []
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.value())
            while self.peek() == ",":
                self.pos += 1
                items.append(self.value())
            self.expect("]")
            return items
        match = _BARE_TOKEN.match(self.text, self.pos)
        if not match:
            raise FilterSyntaxError(f"expected a value at position {self.pos}")
        self.pos = match.end()
        return self.bare(match.group(0))

    def string(self, quote: str) -> str:
        self.pos += 1
        chars: list[str] = []
        while not self.at_end():
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == quote:
                self.pos += 1
                return "".join(chars)
            chars.append(char)
            self.pos += 1
        raise FilterSyntaxError("unterminated string")

    @staticmethod
    def bare(token: str) -> Any:
        if token == "true":
            return True
        if token == "false":
            return False
        if token == "null":
            return None
        if _NUMBER.fullmatch(token):
            return float(token) if "." in token else int(token)
        try:
            return dt.datetime.fromisoformat(token)
        except ValueError as exc:
            raise FilterSyntaxError(f"{token!r} is not a valid value; quote strings") from exc
