"""One Segments API workspace as the code location and its runs see it: its settings, a client, its fetch lock.

Loading the code location builds one of these per workspace; the client (httpx, the page parser) is imported
only when a run asks for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..accounts import AccountSettings
from ..settings import Settings, read_segments_api_key
from ..warehouse import Holder, account_fetch_lock

if TYPE_CHECKING:
    from .client import SegmentsApiClient


@dataclass(frozen=True)
class SegmentsApiWorkspace:
    """One Segments API workspace of the deployment, as a run that snapshots it sees it."""

    settings: Settings
    workspace: AccountSettings

    @property
    def name(self) -> str:
        return self.workspace.name

    @property
    def label(self) -> str:
        return f"Segments API workspace {self.workspace.name!r}"

    def client(self, log=None) -> SegmentsApiClient:
        """A client for this run; the key is read from the workspace's variable now."""
        from .client import SegmentsApiClient

        key = read_segments_api_key(self.workspace, self.settings.key_source)
        return SegmentsApiClient(self.settings.segments_api, key, self.workspace.api_key_env, log=log)

    @contextlib.contextmanager
    def fetch_lock(self, holder: Holder) -> Iterator[None]:
        storage = self.settings.storage
        with account_fetch_lock(
            storage.fetch_lock_path(f"segments_api_{self.name}"),
            self.name,
            run_id=holder.run_id,
            step=holder.step,
            log=holder.info,
            timeout=storage.lock_timeout_seconds,
        ):
            yield
