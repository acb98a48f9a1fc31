"""An offline Segments API platform for segment-pipeline's tests and demo: a real HTTP server.

It answers `GET /api/v1/segments` (page/limit pagination, at most 100 a page, the `id` filter) for several
workspaces, one API key each, with counts that drift day by day and are recounted at irregular moments of a
clock the tests move (`/_admin/clock`). It stands alone: it imports nothing of `segment_pipeline`.
"""

from .server import SegmentsApiSimulator
from .world import Fault, World

__all__ = ["Fault", "SegmentsApiSimulator", "World"]
