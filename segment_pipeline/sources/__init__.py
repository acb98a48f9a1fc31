"""dlt sources for Klaviyo: segment definitions (with their history) and daily segment series.

Two sources with two names and two pipelines, so that neither overwrites the other's dlt schema.
"""

from .segments import klaviyo_segments_source, segment_rows
from .series import klaviyo_series_source

__all__ = ["klaviyo_segments_source", "klaviyo_series_source", "segment_rows"]
