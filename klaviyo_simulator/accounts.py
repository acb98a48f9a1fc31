"""Several simulated Klaviyo accounts behind one server, one per API key, as Klaviyo routes a private key.

Each account has its own data (its seed), timezone, rate-limit windows and daily report quota (Klaviyo's
limits are per account), its own counters, and a key that can be revoked mid-run (401 from then on), so a
test can spend or break one account and watch the others carry on.

`numbered_configs` derives N accounts from one configuration for `serve --accounts N` and `demo --accounts N`:
account i is named `account_<i>`, answers to the key `<key>-<i>`, has the seed `seed + i - 1`, and the
timezone `ACCOUNT_TIMEZONES[i - 1]` (the first keeps the configured timezone).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .account import SimulatedAccount
from .account_config import SimulatorConfig
from .api import FAMILY_LIMITS, REPORTS_FAMILY, ApiRequest, ApiResponse, KlaviyoApi
from .fixed_windows import FixedWindowLimiter
from .recording import Headers, Stats

if TYPE_CHECKING:
    from .simulator import KlaviyoSimulator

# Timezones of derived accounts: far east of UTC, west of it, and the awkward ones (half hours, no DST, +13).
ACCOUNT_TIMEZONES = (
    "US/Eastern",
    "Australia/Sydney",
    "US/Pacific",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "UTC",
)
ADMIN_ACCOUNTS_PATH = "/__simulator/accounts"
_ADMIN_ACTION = re.compile(re.escape(ADMIN_ACCOUNTS_PATH) + r"/(?P<account>[^/]+)/(?P<action>[a-z-]+)")


def account_name(index: int) -> str:
    """The name of derived account `index` (1-based): `account_<index>`."""
    return f"account_{index}"


def derived_key(base_key: str, index: int) -> str:
    """The key of derived account `index` (1-based): the base key, a dash, the index."""
    return f"{base_key}-{index}"


def numbered_configs(base: SimulatorConfig, count: int) -> dict[str, SimulatorConfig]:
    """`count` accounts derived from one configuration, by name (see the module docstring for the rule).

    Args:
        base: Segment count, speed, today and scopes for every account; its key, seed and timezone are the
            starting points of the derived ones.
        count: How many accounts (at least 1).

    Raises:
        ValueError: If `count` is below 1.
    """
    if count < 1:
        raise ValueError("the number of accounts must be at least 1")
    configs = {}
    for index in range(1, count + 1):
        timezone = base.timezone if index == 1 else ACCOUNT_TIMEZONES[(index - 1) % len(ACCOUNT_TIMEZONES)]
        configs[account_name(index)] = dataclasses.replace(
            base,
            api_key=derived_key(base.api_key, index),
            seed=base.seed + index - 1,
            timezone=timezone,
            account_id=None,  # derived from the new seed
        )
    return configs


class ServedAccount:
    """One account as the server hosts it: its data, its rate-limit windows, its API and the state of its key.

    Args:
        name: How tests, the request log and the admin endpoints call it.
        config: The account's configuration (key, seed, timezone, speed, ...).

    Attributes:
        name: The account's name.
        config: Its configuration.
        account: Its data (segments and ground-truth series), like `KlaviyoSimulator.account`.
        rate_limits: Its own fixed windows, daily quota included.
        api: The API layer answering its requests.
        request_stats: Counters of the requests that carried its key.
    """

    def __init__(self, name: str, config: SimulatorConfig) -> None:
        self.name = name
        self.config = config
        self.account = SimulatedAccount(config)
        self.rate_limits = FixedWindowLimiter(FAMILY_LIMITS, speed=config.speed, day_seconds=config.quota_day_seconds)
        self.api = KlaviyoApi(self.account, config, self.rate_limits)
        self.request_stats = Stats()

    def __repr__(self) -> str:
        return f"ServedAccount({self.name!r}, account_id={self.account_id!r}, timezone={self.timezone!r})"

    @property
    def account_id(self) -> str:
        """The account id `GET /api/accounts` reports."""
        return self.account.account_id

    @property
    def timezone(self) -> str:
        """The account's IANA timezone."""
        return self.account.timezone

    @property
    def key_revoked(self) -> bool:
        """Whether its key has been revoked (every request with it gets a 401)."""
        return self.api.key_revoked

    def revoke_key(self) -> None:
        """Revoke the account's key: from now on every request with it is answered 401, as Klaviyo does."""
        self.api.key_revoked = True

    def restore_key(self) -> None:
        """Accept the key again."""
        self.api.key_revoked = False

    def exhaust_report_quota(self, lasting: float = 0.0) -> None:
        """Use up this account's daily report quota: its report calls get 429 until its daily window ends (at
        least `lasting` real seconds from now: see `FixedWindowLimiter.exhaust_daily`)."""
        self.rate_limits.exhaust_daily(REPORTS_FAMILY, lasting)

    def summary(self) -> dict[str, Any]:
        """The account's facts and counters, JSON-ready (never its key)."""
        return {
            "name": self.name,
            "account_id": self.account_id,
            "timezone": self.timezone,
            "today": self.account.today().isoformat(),
            "segment_count": len(self.account.segments),
            "key_revoked": self.key_revoked,
            **self.request_stats.snapshot(),
            "rate_limit_usage": self.rate_limits.usage(),
        }


class ServedAccounts:
    """The accounts of one simulator, found by name, account id or key; routes each request by its key.

    Args:
        configs: Configurations by name, or a sequence of them (each then named by its account id).

    Raises:
        ValueError: If there is no account, or two accounts share a key, an account id or a name.
    """

    def __init__(self, configs: Mapping[str, SimulatorConfig] | Sequence[SimulatorConfig]) -> None:
        named = (
            list(configs.items())
            if isinstance(configs, Mapping)
            else [(config.account_id or "", config) for config in configs]
        )
        if not named:
            raise ValueError("a simulator needs at least one account")
        self._accounts = [ServedAccount(name, config) for name, config in named]
        self._by_key: dict[str, ServedAccount] = {}
        self._lookup: dict[str, ServedAccount] = {}
        for served in self._accounts:
            if served.config.api_key in self._by_key:
                raise ValueError(
                    f"accounts {self._by_key[served.config.api_key].name!r} and {served.name!r} have "
                    "the same API key: Klaviyo keys belong to one account each"
                )
            self._by_key[served.config.api_key] = served
            for token in {served.name, served.account_id}:
                other = self._lookup.setdefault(token, served)
                if other is not served:
                    raise ValueError(
                        f"accounts {other.name!r} and {served.name!r} are both called {token!r} (by name or account "
                        "id): give each its own name and seed (or account_id)"
                    )

    def __iter__(self) -> Iterator[ServedAccount]:
        return iter(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def first(self) -> ServedAccount:
        """The first account: the one the single-account attributes (`sim.account`, ...) stand for."""
        return self._accounts[0]

    @property
    def names(self) -> list[str]:
        """The accounts' names, in order."""
        return [served.name for served in self._accounts]

    def __getitem__(self, key_or_name: str) -> ServedAccount:
        served = self._lookup.get(key_or_name) or self._by_key.get(key_or_name)
        if served is None:
            raise KeyError(f"no simulated account with that name, account id or key; names: {', '.join(self.names)}")
        return served

    def find(self, name_or_id: str | None) -> ServedAccount | None:
        """The account with this name or account id (the first when `None`); `None` when there is none."""
        if name_or_id is None:
            return self.first
        return self._lookup.get(name_or_id)

    def for_headers(self, headers: Headers) -> ServedAccount | None:
        """The account whose key a request carries, revoked or not; `None` when it carries none of theirs."""
        scheme, _, key = (headers.get("Authorization") or "").partition(" ")
        return self._by_key.get(key.strip()) if scheme else None

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Answer a request with the API of the account its key belongs to.

        A request with no known key still goes through an API (the first account's), so it meets the checks
        in Klaviyo's order: 404 and 405 before the 401 for the key.
        """
        served = self.for_headers(request.headers) or self.first
        return served.api.handle(request)


def handle_account_admin(
    simulator: KlaviyoSimulator, method: str, path: str, query: Mapping[str, str]
) -> tuple[int, Any] | None:
    """The `/__simulator/accounts` admin endpoints; `None` when the path is not one of them.

    * `GET  /__simulator/accounts`: every account's name, id, timezone, counters and key state.
    * `POST /__simulator/accounts/{name or id}/revoke-key`: answer 401 to its key from now on.
    * `POST /__simulator/accounts/{name or id}/restore-key`: accept its key again.
    * `POST /__simulator/accounts/{name or id}/exhaust-report-quota`: spend its daily report quota.
    """
    if path == ADMIN_ACCOUNTS_PATH and method == "GET":
        return 200, {"accounts": [served.summary() for served in simulator.accounts]}
    match = _ADMIN_ACTION.fullmatch(path)
    if match is None or method != "POST":
        return None
    served = simulator.accounts.find(match.group("account"))
    if served is None:
        return 404, {"error": f"no account named {match.group('account')!r}; names: {simulator.accounts.names}"}
    actions = {
        "revoke-key": served.revoke_key,
        "restore-key": served.restore_key,
        "exhaust-report-quota": served.exhaust_report_quota,
    }
    action = actions.get(match.group("action"))
    if action is None:
        return 404, {"error": f"no account action {match.group('action')!r}; actions: {', '.join(actions)}"}
    action()
    return 200, served.summary()
