"""The Segments API platform: a read-only `GET /api/v1/segments` with definitions and a cached member count,
and no history. Its client, the bounds of what it answers, and the daily snapshot that builds the history.
No Dagster here (segment_pipeline/defs/segments_api.py is the thin layer on top).
"""

from .errors import (
    SegmentsApiAuthError,
    SegmentsApiConfigError,
    SegmentsApiError,
    SegmentsApiResponseError,
    SegmentsApiUnavailableError,
)
from .options import PLATFORM, SegmentsApiOptions

__all__ = [
    "PLATFORM",
    "SegmentsApiAuthError",
    "SegmentsApiConfigError",
    "SegmentsApiError",
    "SegmentsApiOptions",
    "SegmentsApiResponseError",
    "SegmentsApiUnavailableError",
]
