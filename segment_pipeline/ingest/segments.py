"""Refreshing one account's segments: the listing, their definition history, tags and the account. No Dagster here.

Klaviyo is asked outside the warehouse lock, under the account's own fetch lock: other accounts load while it
answers, and the DuckDB file is held only to read what is stored and to load what came.

Tags are listed once a day: the first segments run of each account-local day lists with `include=tags`, which
Klaviyo paces under a stricter limit of its own (3 requests a second and 60 a minute: about 75 s for 1,000
segments); every other run lists the plain endpoint at its own limits (75 a second, 750 a minute: 100 pages
wait for no limit, only for the answers). The day of the last tag listing is the newest `_loaded_at` of
klaviyo.segment_tags, so it needs no state of its own and a warehouse restored from a copy knows it too.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .. import warehouse as wh
from ..deletions import plan_deletions
from ..klaviyo import Account, KlaviyoAuthError, KlaviyoClient
from ..klaviyo.limits import SCOPE_TAGS
from ..klaviyo.segment_listing import SegmentListing
from ..warehouse import Holder, Warehouse
from .access import IngestError, KlaviyoAccess


@dataclass(frozen=True)
class SegmentsOutcome:
    """What a refresh of the segments found and loaded."""

    account: Account
    segments: int
    new_segments: int
    deleted_segments: int
    inactive_segments: int
    requests_sent: int
    tags_loaded: bool
    tags: int
    definition_versions: int
    # ids the listing lacks but were not marked deleted: the listing shrank too sharply (see `plan_deletions`)
    deletions_held_back: int = 0
    # listed without their tags' `data` (the spec allows it): their stored tags are kept
    segments_without_tag_data: int = 0
    # when the stored tags were listed: this run's load when it listed them, else an earlier one (None: never)
    tags_listed_at: dt.datetime | None = None


def tags_due(mode: str, listed_at: dt.datetime | None, now: dt.datetime, zone: ZoneInfo, *, forced: bool) -> bool:
    """Whether this run lists the tags: never with `off`; when asked (`forced`); else when they were never
    listed or last listed on an earlier day of the account (`zone`) than `now`'s."""
    if mode == "off":
        return False
    if forced or listed_at is None:
        return True
    return listed_at.astimezone(zone).date() < now.astimezone(zone).date()


def list_segments_and_tags(
    client: KlaviyoClient, log: logging.Logger, mode: str, *, with_tags: bool = True
) -> SegmentListing:
    """The whole listing of the account's segments, with their tags when `with_tags` and the mode allow.

    Without `with_tags` (or with the mode `off`) the plain listing, at the segments endpoint's own limits.
    Tags need the tags:read scope, which keys made before tags were loaded do not have. With `auto` a key
    without it still loads every segment: the run logs a warning naming the scope and the stored tags are
    left as they were. `required` fails the run instead.
    """
    if mode == "off" or not with_tags:
        return client.segment_listing(with_tags=False)
    try:
        return client.segment_listing(with_tags=True)
    except KlaviyoAuthError as exc:
        if exc.status != 403 or mode == "required":
            raise
        log.warning(
            "the API key lacks the %s scope, so segment tags were not loaded this run and the stored tags are "
            "kept as last loaded; add %s to the key (or set KLAVIYO_TAGS=off to stop asking)",
            SCOPE_TAGS,
            SCOPE_TAGS,
        )
        return client.segment_listing(with_tags=False)


def check_one_name_per_account(access: KlaviyoAccess, account: Account, stored_names: list[str]) -> None:
    """Two accounts of the file with keys of the same Klaviyo account would load its rows under two names."""
    clashing = sorted(set(stored_names) & set(access.other_account_names))
    if clashing:
        raise IngestError(
            f"{access.label}: its key belongs to Klaviyo account {account.id}, which is already loaded as "
            f"account {clashing[0]!r} of {access.settings.accounts.source}. Keep one entry for that Klaviyo "
            "account in the file (each entry needs a key of a different account); nothing was loaded."
        )


def refresh_segments(
    access: KlaviyoAccess,
    warehouse: Warehouse,
    holder: Holder,
    log: logging.Logger,
    *,
    confirm_deletions: bool = False,
    refresh_tags: bool = False,
) -> SegmentsOutcome:
    """List the account's segments and load them, their definition versions, tags and the account.

    Only a complete listing is loaded (the client collects every page first). Segments it lacks are marked
    deleted, unless it lacks more than half of those stored as live and `confirm_deletions` is off: such a
    listing is more often cut short than real, so those are held back with a warning. Tags are listed on the
    account's first run of the day, or when `refresh_tags` asks (see the module's docstring).
    """
    # dlt: imported by runs, not by loading the code
    from ..sources.segments import klaviyo_segments_source

    loaded_at = dt.datetime.now(dt.UTC)
    with access.fetch_lock(holder), access.client(holder.log) as client:
        account = client.get_account()
        access.check_timezone(account)
        with warehouse.lock(holder):
            listed_at = wh.tags_loaded_at(warehouse.location, account.id)
        mode = access.settings.klaviyo.tags
        with_tags = tags_due(mode, listed_at, loaded_at, access.account.zone, forced=refresh_tags)
        listing = list_segments_and_tags(client, log, mode, with_tags=with_tags)
        requests_sent = sum(client.stats.sent.values())
        # still under the fetch lock: a second run of the account never loads an older listing after this one
        with warehouse.lock(holder):
            check_one_name_per_account(access, account, wh.account_names_of(warehouse.location, account.id))
            previous = wh.stored_segments(warehouse.location, account.id)
            live_before = (row["id"] for row in previous if not row.get("is_deleted"))
            deletions = plan_deletions(live_before, listing.ids, confirmed=confirm_deletions)
            if deletions.held_back:
                rerun = "run the segments step again with the run config `confirm_deletions: true`"
                log.warning("%s: %s", access.label, deletions.warning(rerun))
            pipeline = warehouse.pipeline("klaviyo_segments", access.name, dlt_columns=True)
            # a package left by a failed run would be loaded in place of this run's data: drop it
            pipeline.abort_packages()
            warehouse.load(
                pipeline,
                klaviyo_segments_source(
                    account,
                    listing,
                    # the held-back ones stay as stored
                    [row for row in previous if row["id"] not in deletions.held],
                    loaded_at,
                    account_name=access.name,
                ),
                holder,
            )
            versions = wh.definition_version_count(warehouse.location, account.id)
    live_ids = listing.ids
    known_ids = {row["id"] for row in previous if not row.get("is_deleted")}
    log.info("loaded %d segments of %s (Klaviyo account %s)", len(listing), access.label, account.id)
    without_tags = listing.without_tag_data()
    if without_tags:
        log.warning(
            "%s: %d of %d segments were listed without their tags (Klaviyo may leave a relationship's data out); "
            "their stored tags are kept as last loaded",
            access.label,
            without_tags,
            len(listing),
        )
    return SegmentsOutcome(
        account=account,
        segments=len(listing),
        new_segments=len(live_ids - known_ids),
        deleted_segments=len(deletions.marked),
        deletions_held_back=len(deletions.gone) if deletions.held_back else 0,
        segments_without_tag_data=without_tags,
        inactive_segments=listing.inactive(),
        requests_sent=requests_sent,
        tags_loaded=listing.tags_listed,
        tags=len(listing.tag_names or {}),
        definition_versions=versions,
        tags_listed_at=loaded_at if listing.tags_listed else listed_at,
    )
