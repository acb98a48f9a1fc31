"""Query-string helpers shared by the endpoints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .error_documents import invalid

# Decoded query parameters, last value per name (Klaviyo's parameters are all single-valued).
Query = dict[str, str]


def to_query(items: Iterable[tuple[str, str]]) -> Query:
    """Collapse decoded `(name, value)` pairs into a dict, keeping the last value of a repeated name."""
    return {name: value for name, value in items}


def check_known_parameters(query: Query, allowed: Sequence[str]) -> None:
    """Refuse query parameters the operation doesn't define, so typos fail loudly instead of being ignored.

    Args:
        query: The decoded parameters.
        allowed: Parameter names the operation accepts.

    Raises:
        ApiError: 400 naming the first unknown parameter.
    """
    for name in query:
        if name not in allowed:
            raise invalid(f"'{name}' is not a valid query parameter for this endpoint.", parameter=name)


def csv_values(raw: str) -> list[str]:
    """Split a comma-separated (`explode: false`) array parameter."""
    return [part for part in (p.strip() for p in raw.split(",")) if part]
