"""What a run needs to reach one Klaviyo account: its client, its report ledger, its fetch lock. No Dagster here.

`KlaviyoAccess` is built from the deployment's settings and one account of it; the Dagster layer hands it to
the ingestion services as the account's resource, and tests build it the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..accounts import AccountSettings, SegmentFilter
from ..klaviyo.ledger import ReportBudget, ReportLedgers
from ..klaviyo.limits import REPORTS_RATE_LIMIT
from ..klaviyo.pacing import min_interval
from ..settings import Settings, read_api_key
from ..warehouse import Holder, account_fetch_lock

if TYPE_CHECKING:
    from ..klaviyo.client import Account, KlaviyoClient


class IngestError(RuntimeError):
    """A run cannot go on, for a reason a retry will not change (the message says what to do)."""


@dataclass(frozen=True)
class KlaviyoAccess:
    """One Klaviyo account of the deployment, as the runs that read it see it."""

    settings: Settings
    account: AccountSettings

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def label(self) -> str:
        """How messages name the account: `account 'brand_a'`."""
        return f"account {self.account.name!r}"

    @property
    def segment_filter(self) -> SegmentFilter:
        return self.account.segments

    @property
    def lookback_days(self) -> int:
        return self.account.lookback_days

    @property
    def where_configured(self) -> str:
        return self.settings.where_configured(self.account)

    @property
    def other_account_names(self) -> tuple[str, ...]:
        """The deployment's other accounts: a second name for the same Klaviyo account is refused, not merged."""
        return tuple(name for name in self.settings.accounts.names if name != self.account.name)

    def ledgers(self, log=None) -> ReportLedgers:
        """The report ledgers, one per Klaviyo account; reading them needs no key (the resume sensor has none)."""
        return ReportLedgers(
            self.account.report_daily_limit,
            str(self.settings.ledger_dir),
            window_seconds=self.settings.klaviyo.report_budget_window_seconds,
            legacy_file=self.settings.storage.legacy_report_ledger_path,
            log=log,
        )

    def budget(self, account_id: str) -> ReportBudget:
        """One Klaviyo account's report budget, read without a key."""
        return self.ledgers().for_account(account_id)

    def report_interval_seconds(self) -> float:
        """Seconds between report requests at the account's pace (for finish-time estimates)."""
        return min_interval(REPORTS_RATE_LIMIT, self.account.report_rate_per_minute)

    def client(self, log=None) -> KlaviyoClient:
        """A client for this run; the key is read from the account's variable now (KlaviyoConfigError if unset).

        `log` (a step's logger) gets its waits, retries and bounded values, so the run's log shows them.
        """
        # imported here: loading the code location (every Dagster process) needs no HTTP client
        from ..klaviyo.client import KlaviyoClient

        settings = self.settings.klaviyo.for_account(
            api_key=read_api_key(self.account, self.settings.key_source),
            api_key_variable=self.account.api_key_env,
            report_rate_per_minute=self.account.report_rate_per_minute,
            report_daily_limit=self.account.report_daily_limit,
            ledger_dir=self.settings.ledger_dir,
        )
        return KlaviyoClient(settings, ledgers=self.ledgers(log), log=log)

    @contextlib.contextmanager
    def fetch_lock(self, holder: Holder) -> Iterator[None]:
        """Hold this account's Klaviyo requests for a step: two runs of one account would share its pace and
        budget from two processes, so the second waits; other accounts fetch meanwhile."""
        with account_fetch_lock(
            self.settings.storage.fetch_lock_path(self.account.name),
            self.account.name,
            run_id=holder.run_id,
            step=holder.step,
            log=holder.info,
            timeout=self.settings.storage.lock_timeout_seconds,
        ):
            yield

    def check_timezone(self, account: Account) -> None:
        """The partitions are days in the configured timezone; they must be the account's."""
        if account.timezone == self.account.timezone:
            return
        if self.settings.accounts.source is not None:
            fix = (
                f"Write `timezone: {account.timezone}` for {self.account.name} in {self.settings.accounts.source} "
                "and reload the code location"
            )
        else:
            fix = f"Set KLAVIYO_TIMEZONE={account.timezone} and restart Dagster"
        raise IngestError(
            f"{self.label}: it is configured with timezone {self.account.timezone!r} but Klaviyo account "
            f"{account.id} reports in {account.timezone!r}. {fix}, so its daily partitions are the account's days. "
            "No request for its series was sent."
        )
