"""Segment names: realistic marketing names, deliberately including the characters that break naive code.

Quotes break hand-built filter strings and SQL, accents and emoji break code that assumes ASCII or counts bytes.
The first few names are chosen so even a small account contains every awkward character class.
"""

from __future__ import annotations

import random

# The awkward ones come first so that any account with a handful of segments has them.
_AWKWARD = (
    'VIP "Gold" customers',
    "Customers who haven't purchased",
    "Clientes de São Paulo",
    "🎉 Holiday shoppers",
    "Café & crème lovers ☕",
    "Won't open, won't click",
    'Size "M" & "L" buyers',
    "Zürich newsletter — Deutsch",
)

_PLAIN = (
    "Engaged in the last 30 days",
    "Engaged in the last 60 days",
    "Engaged in the last 90 days",
    "Repeat purchasers",
    "Boston purchasers",
    "Churn risk",
    "High predicted CLV",
    "Likely female",
    "SMS subscribers",
    "Email subscribers (double opt-in)",
    "EU profiles",
    "Within 20 miles of Columbus",
    "Abandoned checkout",
    "Newsletter only",
    "Loyalty tier: Bronze",
    "Loyalty tier: Silver",
    "Loyalty tier: Platinum",
    "Winback candidates",
    "First-time buyers",
    "Browse abandoners",
    "Hotmail addresses",
    "Unengaged 180 days",
    "Sunset policy",
    "Product reviewers",
    "Gift card buyers",
    "Wholesale accounts",
    "Black Friday 2025 buyers",
    "Spring launch waitlist",
)


def segment_names(count: int, seed: int) -> list[str]:
    """Return `count` distinct segment names, awkward characters first, then a seeded shuffle.

    Args:
        count: How many names to return.
        seed: Seed for the order of the plain names and for numbering past the pool size.

    Returns:
        A list of unique names.
    """
    plain = list(_PLAIN)
    random.Random(f"names:{seed}").shuffle(plain)
    pool = list(_AWKWARD) + plain
    names: list[str] = []
    for index in range(count):
        base = pool[index % len(pool)]
        round_ = index // len(pool)
        # past the pool size, number the repeats so names stay unique (filters by name must hit one segment)
        names.append(base if round_ == 0 else f"{base} #{round_ + 1}")
    return names
