"""How a step's errors reach the UI: a `dagster.Failure` that says what happened and what to do.

Transient trouble (5xx after retries, a spent quota, a locked file) may be retried by a run retry policy;
anything else (a bad key, a refused window, a malformed response) would fail the same way again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from .. import warehouse as wh
from ..config import ConfigError
from ..ingest.access import IngestError
from ..klaviyo import KlaviyoError, KlaviyoQuotaExhausted, KlaviyoServerError, ReportWindowError
from ..segments_api.errors import SegmentsApiError, SegmentsApiUnavailableError
from ..state_files import StateFileError

# the errors that carry their own explanation: what happened and what to do
_EXPLAINED = (KlaviyoError, SegmentsApiError, wh.WarehouseLockedError, IngestError, ConfigError, StateFileError)


def _cause(exc: BaseException) -> BaseException | None:
    """The Klaviyo, warehouse or ingestion error behind a dlt step failure, if there is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _EXPLAINED):
            return exc
        if isinstance(exc, Exception) and wh.is_lock_error(exc):
            # the file was taken between our read and dlt's load: say so plainly, not as a dlt stack
            return wh.WarehouseLockedError(
                f"the warehouse is locked by {wh.lock_holder(exc)}: close that DuckDB session and run again; "
                "this run's rows were not loaded"
            )
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def explained_failures(label: str) -> Iterator[None]:
    """Turn service errors into a Failure whose description starts with `label` (e.g. "account 'brand_a'")."""
    # dlt costs half a second to import: loading the code (webserver, `definitions validate`) need not pay
    from dlt.pipeline.exceptions import PipelineStepFailed

    try:
        yield
    except dg.Failure:
        raise
    except (*_EXPLAINED, PipelineStepFailed) as exc:
        cause = _cause(exc) or exc
        retryable = isinstance(
            cause, (KlaviyoServerError, KlaviyoQuotaExhausted, SegmentsApiUnavailableError, wh.WarehouseLockedError)
        )
        text = str(cause)
        if isinstance(cause, ReportWindowError):
            text = f"{text}. No request was sent."
        description = text if text.startswith(label) else f"{label}: {text}"
        raise dg.Failure(description=description, allow_retries=retryable) from exc
