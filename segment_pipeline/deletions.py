"""Which segments a complete listing says are deleted, and when so many are missing that it is held back.

Both platforms list every segment and mark deleted the ones a complete listing lacks. A listing that lacks
more than half of those stored as live is more likely broken (cut short by a proxy, an outage, a key of
another account) than a mass deletion, so its deletions wait until a run confirms them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .klaviyo.errors import abbreviated

MASS_DELETION_SHARE = 0.5
# the run option that confirms them, as the Launchpad describes it (both platforms' steps take it)
CONFIRM_DELETIONS_HELP = (
    "Mark segments deleted even when the listing lacks more than half of those stored as live. Off by default: "
    "such a listing is more often cut short than real, and its deletions are held back."
)


@dataclass(frozen=True)
class Deletions:
    """What a complete listing says about the segments stored as live.

    Attributes:
        gone: ids of segments stored as live that the listing lacks.
        live_before: how many segments were stored as live.
        held_back: whether `gone` is more than MASS_DELETION_SHARE of `live_before` and not confirmed, so
            none of them is marked deleted this run.
    """

    gone: tuple[str, ...]
    live_before: int
    held_back: bool

    @property
    def marked(self) -> tuple[str, ...]:
        """Ids marked deleted by this run."""
        return () if self.held_back else self.gone

    @property
    def held(self) -> frozenset[str]:
        """Ids that stay as stored although the listing lacks them."""
        return frozenset(self.gone) if self.held_back else frozenset()

    def warning(self, rerun: str) -> str:
        """The warning of a held-back listing; `rerun` names how to run again with the deletions confirmed."""
        return (
            f"the segments listing lacks {len(self.gone)} of the {self.live_before} segments stored as live (more "
            f"than {MASS_DELETION_SHARE:.0%} of them), so none of them was marked deleted: a listing that shrinks this "
            f"much is more often cut short than real. If they were deleted, {rerun}; otherwise the next complete "
            f"listing keeps them. Lacking: {abbreviated(self.gone)}"
        )


def plan_deletions(live_ids: Iterable[str], current_ids: set[str], *, confirmed: bool = False) -> Deletions:
    """Which stored live segments (`live_ids`) a complete listing (`current_ids`) lacks, and whether so many
    lack that they are held back."""
    live = set(live_ids)
    gone = tuple(sorted(live - current_ids))
    sharp = len(gone) > MASS_DELETION_SHARE * len(live)
    return Deletions(gone=gone, live_before=len(live), held_back=bool(gone) and sharp and not confirmed)
