"""Fixed-window rate limits per endpoint family, like Klaviyo's burst (1 s), steady (1 min) and daily windows.

Windows are fixed, not sliding: every window of a given length starts at a multiple of its length, counted
from when the limiter was created. Two requests at the end of one minute and two at the start of the next
all pass, which is exactly the behaviour the client's spacing logic must cope with.

`speed` divides every window length so a test can use up a minute's budget in a fraction of a second;
`day_seconds` sets the daily window's real length on its own (a test's short quota day). `Retry-After` and
`RateLimit-Reset` are always in real seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .rules import (
    BURST_WINDOW_SECONDS,
    REPORT_QUOTA_WINDOW_SECONDS,
    STEADY_WINDOW_SECONDS,
    RateLimit,
)

SECOND = float(BURST_WINDOW_SECONDS)
MINUTE = float(STEADY_WINDOW_SECONDS)
DAY = float(REPORT_QUOTA_WINDOW_SECONDS)


@dataclass(frozen=True)
class Decision:
    """The outcome of one rate-limit check.

    Attributes:
        allowed: Whether the request may proceed (and was counted).
        retry_after: When refused, whole real seconds until every exceeded window has reset (at least 1).
        limit: Requests allowed in the steady (1 min) window, for `RateLimit-Limit`.
        remaining: Requests left in the current steady window, for `RateLimit-Remaining`.
        reset: Whole real seconds until the steady window resets, for `RateLimit-Reset`.
    """

    allowed: bool
    retry_after: int
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """Response headers for this decision: `Retry-After` when refused, `RateLimit-*` otherwise."""
        if not self.allowed:
            return {"Retry-After": str(self.retry_after)}
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


class FixedWindowLimiter:
    """Counts requests per family in fixed windows and refuses those over any window's limit.

    Refused requests are not counted, matching Klaviyo (a retry after the window resets succeeds).

    Args:
        limits: Rate limit per family name (e.g. "segments", "reports").
        speed: Divides every window length.
        clock: Returns monotonic seconds; replace it in tests to control time exactly.
        day_seconds: Real length of the daily window; `None` for a day divided by `speed`.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        day_seconds: float | None = None,
    ) -> None:
        self._limits = dict(limits)
        self._speed = speed
        # the daily window's length in scaled time, so that it lasts `day_seconds` real seconds
        self._day = DAY if day_seconds is None else day_seconds * speed
        if self._day <= MINUTE:
            raise ValueError("the daily window must be longer than the steady (1 minute) window, in scaled time")
        self._clock = clock
        self._origin = clock()
        self._lock = threading.Lock()
        # family -> window length -> (window index, count in that window)
        self._counts: dict[str, dict[float, tuple[int, int]]] = {family: {} for family in self._limits}

    @property
    def clock(self) -> Callable[[], float]:
        """The time source (monotonic seconds)."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        with self._lock:
            self._clock = clock
            self._origin = clock()
            self._counts = {family: {} for family in self._limits}

    def _windows(self, limit: RateLimit) -> list[tuple[float, int]]:
        windows = [(SECOND, limit.per_second), (MINUTE, limit.per_minute)]
        if limit.per_day is not None:
            windows.append((self._day, limit.per_day))
        return windows

    def _scaled_now(self) -> float:
        return (self._clock() - self._origin) * self._speed

    def _count(self, family: str, length: float, index: int) -> int:
        stored = self._counts[family].get(length)
        return stored[1] if stored is not None and stored[0] == index else 0

    def _seconds_left(self, now: float, length: float) -> float:
        index = math.floor(now / length)
        return ((index + 1) * length - now) / self._speed

    def acquire(self, family: str) -> Decision:
        """Count one request of a family if every window has room.

        Args:
            family: The endpoint family.

        Returns:
            The decision, with the values for the response headers.
        """
        limit = self._limits[family]
        with self._lock:
            now = self._scaled_now()
            wait = 0.0
            for length, allowed in self._windows(limit):
                index = math.floor(now / length)
                if self._count(family, length, index) >= allowed:
                    wait = max(wait, self._seconds_left(now, length))
            steady_left = self._seconds_left(now, MINUTE)
            if wait > 0:
                return Decision(False, max(1, math.ceil(wait)), limit.per_minute, 0, max(1, math.ceil(steady_left)))
            for length, _ in self._windows(limit):
                index = math.floor(now / length)
                self._counts[family][length] = (index, self._count(family, length, index) + 1)
            used = self._count(family, MINUTE, math.floor(now / MINUTE))
            return Decision(True, 0, limit.per_minute, max(0, limit.per_minute - used), max(1, math.ceil(steady_left)))

    def exhaust_daily(self, family: str, lasting: float = 0.0) -> None:
        """Use up the family's daily quota for the current daily window.

        Args:
            family: A family with a daily limit.
            lasting: Real seconds the quota must stay spent: when the current window ends sooner, this waits
                for the next window and spends that one (a test with a short simulated day would otherwise
                see its next request fall into a fresh window now and then).

        Raises:
            ValueError: If the family has no daily limit.
        """
        limit = self._limits[family]
        if limit.per_day is None:
            raise ValueError(f"{family} has no daily limit")
        with self._lock:
            left = self._seconds_left(self._scaled_now(), self._day)
        if left < lasting:
            time.sleep(left + 0.01)
        with self._lock:
            index = math.floor(self._scaled_now() / self._day)
            self._counts[family][self._day] = (index, limit.per_day)

    def usage(self) -> dict[str, dict[str, int]]:
        """Requests counted in the current windows, per family: {"second": n, "minute": n, "day": n}."""
        names = {SECOND: "second", MINUTE: "minute", self._day: "day"}
        with self._lock:
            now = self._scaled_now()
            return {
                family: {
                    names[length]: self._count(family, length, math.floor(now / length))
                    for length, _ in self._windows(limit)
                }
                for family, limit in self._limits.items()
            }
