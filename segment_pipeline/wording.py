"""Small helpers for the words of user-facing messages, so counts read right ("1 day", "2 days")."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun in the number it takes: "1 day", "0 days", "3 accounts", "2 entries".

    Args:
        count: How many.
        singular: The noun for one.
        plural_form: The noun for any other count (default: `singular` + "s").
    """
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"
