"""`KlaviyoSimulator`: the account, the API layer and the HTTP server, started and stopped together."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from .account import SimulatedAccount
from .account_config import SimulatorConfig
from .api import FAMILY_LIMITS, REPORTS_FAMILY, KlaviyoApi
from .faults import FaultPlan
from .fixed_windows import FixedWindowLimiter
from .recording import RecordedRequest, RequestLog, Stats
from .server import SimulatorHTTPServer


class KlaviyoSimulator:
    """A local HTTP server that behaves like Klaviyo's segment and segment-report API.

    Example:
        >>> with KlaviyoSimulator(SimulatorConfig(api_key="sim-key", segment_count=5)) as sim:
        ...     url = sim.base_url  # "http://127.0.0.1:<port>"

    Args:
        config: The account and server configuration; defaults to `SimulatorConfig()`.
        log_limit: Keep only the most recent N requests in `requests` (for long-running processes);
            `None` keeps every request.
    """

    def __init__(self, config: SimulatorConfig | None = None, *, log_limit: int | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.account = SimulatedAccount(self.config)
        self.faults = FaultPlan()
        self.rate_limits = FixedWindowLimiter(
            FAMILY_LIMITS, speed=self.config.speed, day_seconds=self.config.quota_day_seconds
        )
        self.api = KlaviyoApi(self.account, self.config, self.rate_limits)
        self._log = RequestLog(log_limit)
        self._stats = Stats()
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> KlaviyoSimulator:
        """Start serving in a background thread.

        Args:
            host: Interface to bind.
            port: Port to bind; 0 picks a free one (see `base_url`).

        Returns:
            The simulator itself.

        Raises:
            RuntimeError: If it is already running.
        """
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = SimulatorHTTPServer((host, port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="klaviyo-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (safe to call twice)."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> KlaviyoSimulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._server is not None

    @property
    def base_url(self) -> str:
        """Scheme, host and port to use as the client's base URL, e.g. "http://127.0.0.1:53211".

        Raises:
            RuntimeError: If the simulator is not running.
        """
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- request log ---------------------------------------------------------------------------------------

    def record(self, entry: RecordedRequest) -> None:
        """Log a request as it arrives (called by the HTTP handler; the answer is filled in later)."""
        self._log.append(entry)

    def record_outcome(self, entry: RecordedRequest, *, is_report: bool) -> None:
        """Count a request's answer in the counters behind `stats()` (called by the HTTP handler)."""
        self._stats.add(entry.path, entry.status, is_report)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Recorded API requests, oldest first (admin endpoints are not recorded)."""
        return self._log.entries()

    def count(self, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        """Count recorded requests matching every given criterion.

        Args:
            method: HTTP method.
            path: Exact path, e.g. "/api/segment-series-reports".
            status: Response status (`None` matches any; dropped connections have status `None`).

        Returns:
            The number of matching requests.
        """
        return self._log.count(method=method, path=path, status=status)

    def reset_log(self) -> None:
        """Forget recorded requests (the counters behind `stats()` keep counting)."""
        self._log.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts by path and status, report requests served and current rate-limit usage."""
        return {
            "account_id": self.account.account_id,
            "timezone": self.account.timezone,
            "today": self.account.today().isoformat(),
            "segment_count": len(self.account.segments),
            **self._stats.snapshot(),
            "rate_limit_usage": self.rate_limits.usage(),
        }

    # -- quotas --------------------------------------------------------------------------------------------

    def exhaust_report_quota(self) -> None:
        """Use up the daily report quota: report calls get 429 until the current daily window ends."""
        self.rate_limits.exhaust_daily(REPORTS_FAMILY)
