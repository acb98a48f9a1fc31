"""`KlaviyoSimulator`: the accounts, the API layer and the HTTP server, started and stopped together."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from .account_config import SimulatorConfig
from .accounts import ServedAccount, ServedAccounts
from .faults import FaultPlan
from .recording import Headers, RecordedRequest, RequestLog, Stats
from .server import SimulatorHTTPServer


class KlaviyoSimulator:
    """A local HTTP server that behaves like Klaviyo's segment and segment-report API.

    Example:
        >>> with KlaviyoSimulator(SimulatorConfig(api_key="sim-key", segment_count=5)) as sim:
        ...     url = sim.base_url  # "http://127.0.0.1:<port>"

    Several accounts, one per key, each with its own data, timezone, rate-limit windows and daily quota:

        >>> sim = KlaviyoSimulator(accounts={"east": SimulatorConfig(api_key="k1", seed=1),
        ...                                  "west": SimulatorConfig(api_key="k2", seed=2, timezone="US/Pacific")})
        >>> sim.accounts["west"].account.segments  # by name, account id or key

    `config`, `account` and `rate_limits` are the first account's, so single-account code keeps working.

    Args:
        config: The account and server configuration; defaults to `SimulatorConfig()`.
        accounts: Instead of `config`: the accounts by name, or a sequence of configurations (each then
            named by its account id). Keys, names and account ids must be distinct.
        log_limit: Keep only the most recent N requests in `requests` (for long-running processes);
            `None` keeps every request.

    Raises:
        ValueError: If both `config` and `accounts` are given, or the accounts clash.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        accounts: Mapping[str, SimulatorConfig] | Sequence[SimulatorConfig] | None = None,
        log_limit: int | None = None,
    ) -> None:
        if config is not None and accounts is not None:
            raise ValueError("pass either config (one account) or accounts (several), not both")
        self.accounts = ServedAccounts(accounts if accounts is not None else [config or SimulatorConfig()])
        first = self.accounts.first
        self.config = first.config
        self.account = first.account
        self.rate_limits = first.rate_limits
        self.faults = FaultPlan()
        # the server hands every request to the accounts, which route it by its key
        self.api = self.accounts
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
        if entry.account is not None:
            self.accounts[entry.account].request_stats.add(entry.path, entry.status, is_report)

    def account_name_for(self, headers: Headers) -> str | None:
        """The name of the account whose key a request carries (revoked or not), for the request log."""
        served = self.accounts.for_headers(headers)
        return served.name if served is not None else None

    @property
    def requests(self) -> list[RecordedRequest]:
        """Recorded API requests, oldest first (admin endpoints are not recorded)."""
        return self._log.entries()

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None, account: str | None = None
    ) -> int:
        """Count recorded requests matching every given criterion.

        Args:
            method: HTTP method.
            path: Exact path, e.g. "/api/segment-series-reports".
            status: Response status (`None` matches any; dropped connections have status `None`).
            account: Name of the account whose key the request carried.

        Returns:
            The number of matching requests.
        """
        return self._log.count(method=method, path=path, status=status, account=account)

    def reset_log(self) -> None:
        """Forget recorded requests (the counters behind `stats()` keep counting)."""
        self._log.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts by path and status and report requests served, in all and per account (`accounts`).

        With one account the top level also carries its id, timezone, today, segment count and rate-limit
        usage, as before; with several those are only under `accounts`, by name.
        """
        totals = self._stats.snapshot()
        per_account = {served.name: served.summary() for served in self.accounts}
        if len(self.accounts) > 1:
            return {**totals, "accounts": per_account}
        return {
            "account_id": self.account.account_id,
            "timezone": self.account.timezone,
            "today": self.account.today().isoformat(),
            "segment_count": len(self.account.segments),
            **totals,
            "rate_limit_usage": self.rate_limits.usage(),
            "accounts": per_account,
        }

    # -- quotas and keys -----------------------------------------------------------------------------------

    def _served(self, account: str | None) -> list[ServedAccount]:
        return list(self.accounts) if account is None else [self.accounts[account]]

    def exhaust_report_quota(self, account: str | None = None, *, lasting: float = 0.0) -> None:
        """Use up the daily report quota: report calls get 429 until the current daily window ends.

        Args:
            account: Name, account id or key of one account; `None` spends every account's quota.
            lasting: Real seconds it must stay spent at least; with a short simulated day this may wait for
                the next daily window first.
        """
        for served in self._served(account):
            served.exhaust_report_quota(lasting)

    def revoke_key(self, account: str | None = None) -> None:
        """Revoke a key: every request with it is answered 401 from now on (in-flight answers are unaffected).

        Args:
            account: Name, account id or key of one account; `None` revokes every account's key.
        """
        for served in self._served(account):
            served.revoke_key()

    def restore_key(self, account: str | None = None) -> None:
        """Accept a revoked key again (`None`: every account's)."""
        for served in self._served(account):
            served.restore_key()
