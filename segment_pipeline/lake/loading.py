"""Running a dlt pipeline into a lake: commit conflicts retried, an unusable catalog said plainly.

The pipeline's own writers take turns (`writer_lock`), so a conflict here comes from a writer outside it.
dlt already retries a load job that hit a conflict, up to its `raise_on_max_retries` (5) in one load; past
that the load stops with the package still pending, and it is loaded again from there (`pipeline.load()`),
never extracted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import DEFAULT_CONFLICT_ATTEMPTS, LakeUnavailableError, catalog_problem, retry_commit_conflicts
from .location import Lake

if TYPE_CHECKING:
    import dlt
    from dlt.common.pipeline import LoadInfo


def run_pipeline(
    lake: Lake,
    pipeline: dlt.Pipeline,
    data: Any,
    *,
    attempts: int = DEFAULT_CONFLICT_ATTEMPTS,
    log: Callable[[str], None] | None = None,
    **run_kwargs: Any,
) -> LoadInfo:
    """`pipeline.run(data, **run_kwargs)` into `lake`, loading the pending package again after a commit conflict.

    Raises:
        LakeUnavailableError: the catalog is down or refused the login; the extracted package stays pending in
            the pipeline's working directory, and `pipeline.load()` (or the next run) loads it.
        LakeCommitConflictError: every attempt conflicted; the package stays pending as well.
    """
    try:
        return retry_commit_conflicts(
            lambda: pipeline.run(data, **run_kwargs), retry=pipeline.load, attempts=attempts, log=log
        )
    except Exception as exc:
        problem = catalog_problem(exc, lake.catalog)
        if problem:
            raise LakeUnavailableError(problem) from exc
        raise
