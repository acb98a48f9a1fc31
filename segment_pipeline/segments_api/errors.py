"""What can go wrong with the Segments API platform, each with what happened and what to do."""

from __future__ import annotations

from ..config import ConfigError


class SegmentsApiError(RuntimeError):
    """A snapshot could not be taken; nothing of it was stored."""


class SegmentsApiConfigError(ConfigError):
    """A Segments API setting cannot be used (no key, a bad base URL); the message names the variable."""


class SegmentsApiAuthError(SegmentsApiError):
    """The platform refused the key (401/403)."""


class SegmentsApiResponseError(SegmentsApiError):
    """An answer that is not what the platform's document describes: a malformed page, a listing that does
    not add up, a value out of bounds."""


class SegmentsApiUnavailableError(SegmentsApiError):
    """The platform kept failing (429, 5xx, timeouts) through every attempt, or asked for too long a wait."""
