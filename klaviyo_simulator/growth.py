"""The daily membership model behind every segment: closed-form levels, so any day costs the same to compute.

A segment's member count on day k (days since Klaviyo's reporting floor) is a pure function `level(k)`:
a trend (linear growth or shrinkage, optional one-off imports), shaped by a slow wave and a weekly rhythm.
Daily flows follow from consecutive levels plus "churn" (profiles swapped in and out on the same day):

    net(k)     = level(k) - level(k-1)
    added(k)   = max(net(k), 0) + churn(k)
    removed(k) = max(-net(k), 0) + churn(k)

so `added - removed == net` and `total(k) == total(k-1) + net(k)` hold exactly, totals are never negative,
and `removed(k) <= total(k-1)`. Because nothing accumulates, a day's numbers never depend on which window
asked for it or on how far "today" has moved, and a year of data needs only a year of work.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

# Days are computed and cached in blocks; a 60-day report touches one or two blocks per segment.
_BLOCK_DAYS = 64
# Shared table of uniform noise; each segment walks it with its own stride and shift. A prime length keeps
# every stride a full cycle.
_NOISE_LENGTH = 4099
_TWO_PI = 2.0 * math.pi


def noise_table(seed: int) -> tuple[float, ...]:
    """Return the account's shared table of uniform [0, 1) noise values.

    Args:
        seed: Account seed.

    Returns:
        A tuple of floats.
    """
    rng = random.Random(f"noise:{seed}")
    return tuple(rng.random() for _ in range(_NOISE_LENGTH))


@dataclass(frozen=True)
class GrowthModel:
    """Parameters of one segment's membership curve.

    Attributes:
        start: Day offset (from the reporting floor) on which the segment was created; earlier days are zero.
            Negative when the segment predates the floor.
        base: Trend level on the creation day.
        slope: Trend change per day after `delay` days (negative for shrinking segments).
        delay: Days after creation before the trend starts moving (segments that sit empty for a while).
        min_level: The trend never drops below this (shrinking segments level off instead of vanishing).
        wave_amplitude: Relative amplitude of the slow wave.
        wave_period: Period of the slow wave in days.
        wave_phase: Phase of the slow wave in radians.
        weekly: Seven relative offsets, indexed by day offset modulo 7.
        churn_rate: Largest fraction of members swapped in and out on one day.
        steps: One-off jumps `(day offset, members)`, e.g. a list import or a cleanup.
        noise_stride: Step through the shared noise table per day.
        noise_shift: Starting position in the shared noise table.
        active: Inactive segments are not processed, so their membership never changes.
    """

    start: int
    base: float
    slope: float
    delay: int
    min_level: float
    wave_amplitude: float
    wave_period: float
    wave_phase: float
    weekly: tuple[float, ...]
    churn_rate: float
    steps: tuple[tuple[int, int], ...]
    noise_stride: int
    noise_shift: int
    active: bool = True

    def level(self, k: int) -> int:
        """Members at the end of day offset `k` (0 before creation)."""
        return self.levels(k, k)[0]

    def levels(self, first: int, last: int) -> list[int]:
        """Members at the end of each day offset from `first` to `last` inclusive.

        This is the hot loop of the simulator (a year for a thousand segments is ~370k days), so the
        parameters are bound to locals once.
        """
        start, base, slope, delay = self.start, self.base, self.slope, self.delay
        steps, min_level, weekly = self.steps, self.min_level, self.weekly
        amplitude, phase = self.wave_amplitude, self.wave_phase
        frequency = _TWO_PI / self.wave_period
        sin = math.sin
        flat = int(base + 0.5)
        out: list[int] = []
        append = out.append
        for k in range(first, last + 1):
            if k < start:
                append(0)
                continue
            if not self.active:
                append(flat)
                continue
            t = k - start
            trend = base + slope * (t - delay) if t > delay else base
            for step_day, jump in steps:
                if k >= step_day:
                    trend += jump
            if trend < min_level:
                trend = min_level
            value = int(trend * (1.0 + amplitude * sin(frequency * t + phase) + weekly[k % 7]) + 0.5)
            append(value if value > 0 else 0)
        return out


class SegmentSeries:
    """Cached daily totals and flows of one segment, computed lazily block by block.

    Thread-safe: the simulator's HTTP threads and the test thread may ask for the same block.
    """

    def __init__(self, model: GrowthModel, noise: tuple[float, ...]) -> None:
        self._model = model
        self._noise = noise
        self._blocks: dict[int, tuple[list[int], list[int], list[int]]] = {}
        self._lock = threading.Lock()

    @property
    def model(self) -> GrowthModel:
        """The growth parameters."""
        return self._model

    def _compute_block(self, block: int) -> tuple[list[int], list[int], list[int]]:
        model, noise = self._model, self._noise
        first = block * _BLOCK_DAYS
        levels = model.levels(first - 1, first + _BLOCK_DAYS - 1)
        totals: list[int] = []
        added: list[int] = []
        removed: list[int] = []
        churn_rate = model.churn_rate if model.active else 0.0
        stride, shift = model.noise_stride, model.noise_shift
        for i in range(_BLOCK_DAYS):
            previous, current = levels[i], levels[i + 1]
            k = first + i
            churn = int(churn_rate * min(previous, current) * noise[(k * stride + shift) % _NOISE_LENGTH])
            net = current - previous
            totals.append(current)
            added.append((net if net > 0 else 0) + churn)
            removed.append((-net if net < 0 else 0) + churn)
        return totals, added, removed

    def _block(self, block: int) -> tuple[list[int], list[int], list[int]]:
        cached = self._blocks.get(block)
        if cached is None:
            with self._lock:
                cached = self._blocks.get(block)
                if cached is None:
                    cached = self._compute_block(block)
                    self._blocks[block] = cached
        return cached

    def rows(self, first: int, last: int) -> list[tuple[int, int, int]]:
        """Return `(total, added, removed)` for each day offset from `first` to `last`, both included.

        Args:
            first: First day offset (>= 0).
            last: Last day offset.

        Returns:
            One tuple per day, in order; empty when `last < first`.
        """
        out: list[tuple[int, int, int]] = []
        k = first
        while k <= last:
            block, index = divmod(k, _BLOCK_DAYS)
            totals, added, removed = self._block(block)
            stop = min(_BLOCK_DAYS, index + (last - k) + 1)
            out.extend(zip(totals[index:stop], added[index:stop], removed[index:stop], strict=True))
            k += stop - index
        return out
