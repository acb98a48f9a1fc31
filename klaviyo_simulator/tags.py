"""Tags on simulated segments: a small fixed vocabulary, each segment given zero to two of them by its seed.

Klaviyo tags are account-wide labels (id + name) that marketers attach to segments, lists, flows and
campaigns; analysts group segments by them. Some segments carry none, and names include an awkward one
(quotes, emoji) for the same reason segment names do.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

_TAG_NAMES = (
    "Lifecycle",
    "Newsletter",
    "VIP",
    "Win-back",
    "Onboarding",
    'Seasonal "Q4" 🎄',
    "Paid social",
)


@dataclass(frozen=True)
class Tag:
    """A Klaviyo tag: a UUID-style id and a name."""

    id: str
    name: str


def account_tags(seed: int) -> tuple[Tag, ...]:
    """The account's tags; ids are stable for a seed."""
    return tuple(
        Tag(str(uuid.UUID(int=random.Random(f"tag:{seed}:{name}").getrandbits(128))), name) for name in _TAG_NAMES
    )


def segment_tags(seed: int, index: int) -> tuple[Tag, ...]:
    """Zero, one or two tags for the segment at `index`, in the account's tag order."""
    tags = account_tags(seed)
    rng = random.Random(f"segment-tags:{seed}:{index}")
    count = rng.choice((0, 1, 1, 2))
    chosen = set(rng.sample(range(len(tags)), count))
    return tuple(tag for position, tag in enumerate(tags) if position in chosen)
