"""Admin endpoints under `/__simulator/` for when the simulator runs as a separate process.

They are not part of Klaviyo's API: no auth, no rate limits, not recorded in the request log.

* `GET  /__simulator/stats`: request counts by path and status, report requests served, rate-limit usage.
* `GET  /__simulator/truth/series?segment_id=..&start=YYYY-MM-DD&end=YYYY-MM-DD`: ground-truth rows.
* `POST /__simulator/segments/{id}/edit`: edit a segment's definition (bumps `updated`).
* `POST /__simulator/segments/{id}/delete`: delete a segment: it leaves listings, `GET /api/segments/{id}`
  answers 404, and reports leave it out of `results` (as Klaviyo does for a deleted segment).
* `POST /__simulator/segments?name=..&hours_ago=..&processing_hours=..&backfill_hours=..`: create a segment
  (all optional): it shows `is_processing`, and its past days answer zeros until its backfill is done.
* `POST /__simulator/segments/{id}/finish-backfill`: end a created segment's processing and backfill now.
* `POST /__simulator/segments/{id}/tags?add=NAME&remove=NAME`: put one of the account's tags on a segment, or
  take one off (either or both; `updated` does not move, as in Klaviyo); answers the segment's tags.
* `POST /__simulator/scenario/definition-change?first=YYYY-MM-DD&last=YYYY-MM-DD`: the demo's definition change
  (`scenario.py`): one segment edited as of noon on the middle day of the range; 409 when none can be.
* `/__simulator/accounts...`: list the accounts, revoke or restore a key, spend a quota (see `accounts.py`).

With several accounts, `?account=<name or id>` picks the account for the truth and edit endpoints (default:
the first).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from .accounts import handle_account_admin

if TYPE_CHECKING:
    from .account import SimulatedAccount
    from .simulator import KlaviyoSimulator

ADMIN_PREFIX = "/__simulator/"
_EDIT = re.compile(r"/__simulator/segments/(?P<id>[^/]+)/edit")
_DELETE = re.compile(r"/__simulator/segments/(?P<id>[^/]+)/delete")
_FINISH_BACKFILL = re.compile(r"/__simulator/segments/(?P<id>[^/]+)/finish-backfill")
_TAGS = re.compile(r"/__simulator/segments/(?P<id>[^/]+)/tags")


def handle_admin(simulator: KlaviyoSimulator, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
    """Answer an admin request.

    Args:
        simulator: The running simulator.
        method: HTTP method.
        path: Request path (starts with `ADMIN_PREFIX`).
        query: Decoded query parameters.

    Returns:
        `(status, JSON body)`.
    """
    if path == "/__simulator/stats" and method == "GET":
        return 200, simulator.stats()
    answer = handle_account_admin(simulator, method, path, query)
    if answer is not None:
        return answer
    served = simulator.accounts.find(query.get("account"))
    if served is None:
        return 404, {"error": f"no account {query.get('account')!r}; names: {simulator.accounts.names}"}
    if path == "/__simulator/truth/series" and method == "GET":
        return _truth_series(served.account, query)
    match = _EDIT.fullmatch(path)
    if match and method == "POST":
        segment_id = match.group("id")
        try:
            definition = served.account.edit_definition(segment_id)
        except KeyError:
            return 404, {"error": f"no live segment {segment_id}"}
        segment = served.account.segment(segment_id)
        return 200, {"id": segment_id, "definition": definition, "updated": segment.updated.isoformat()}
    if path == "/__simulator/scenario/definition-change" and method == "POST":
        return _definition_change(served.account, query)
    if path == "/__simulator/segments" and method == "POST":
        return _create_segment(served.account, query)
    match = _FINISH_BACKFILL.fullmatch(path)
    if match and method == "POST":
        try:
            served.account.finish_backfill(match.group("id"))
        except KeyError:
            return 404, {"error": f"no live segment {match.group('id')}"}
        return 200, {"id": match.group("id"), "is_processing": False, "backfilled": True}
    match = _TAGS.fullmatch(path)
    if match and method == "POST":
        return _change_tags(served.account, match.group("id"), query)
    match = _DELETE.fullmatch(path)
    if match and method == "POST":
        segment_id = match.group("id")
        try:
            simulator.account.delete(segment_id)
        except KeyError:
            return 404, {"error": f"no live segment {segment_id}"}
        return 200, {"id": segment_id, "deleted": True}
    return 404, {"error": f"no admin endpoint {method} {path}"}


def _change_tags(account: SimulatedAccount, segment_id: str, query: dict[str, str]) -> tuple[int, Any]:
    from .tags import account_tags

    vocabulary = {tag.name: tag for tag in account_tags(account.config.seed)}
    named = [query[name] for name in ("add", "remove") if name in query]
    unknown = [name for name in named if name not in vocabulary]
    if not named or unknown:
        return 400, {"error": f"give add= and/or remove= with one of the account's tags: {sorted(vocabulary)}"}
    if not account.has_segment(segment_id):
        return 404, {"error": f"no live segment {segment_id}"}
    tags = [tag for tag in account.segment(segment_id).tags if tag.name != query.get("remove")]
    if "add" in query and vocabulary[query["add"]] not in tags:
        tags.append(vocabulary[query["add"]])
    account.set_tags(segment_id, tuple(tags))
    return 200, {"id": segment_id, "tags": [{"id": tag.id, "name": tag.name} for tag in tags]}


def _definition_change(account: SimulatedAccount, query: dict[str, str]) -> tuple[int, Any]:
    from .scenario import stage_definition_change

    try:
        first, last = dt.date.fromisoformat(query["first"]), dt.date.fromisoformat(query["last"])
    except KeyError as exc:
        return 400, {"error": f"missing query parameter {exc.args[0]}"}
    except ValueError as exc:
        return 400, {"error": f"dates must be YYYY-MM-DD: {exc}"}
    try:
        change = stage_definition_change(account, first, last)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    if change is None:
        return 409, {"error": "no segment old enough to stage a definition change in"}
    return 200, {"segment_id": change.segment_id, "segment_name": change.segment_name, "at": change.at.isoformat()}


def _create_segment(account: SimulatedAccount, query: dict[str, str]) -> tuple[int, Any]:
    try:
        hours = {
            name: float(query[name]) for name in ("hours_ago", "processing_hours", "backfill_hours") if name in query
        }
    except ValueError as exc:
        return 400, {"error": f"hours must be numbers: {exc}"}
    created = account.now() - dt.timedelta(hours=hours.pop("hours_ago", 0.0))
    try:
        segment = account.create_segment(query.get("name"), created=created, **hours)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    return 201, {
        "id": segment.id,
        "name": segment.name,
        "created": segment.created.isoformat(),
        "is_processing": segment.is_processing,
        "backfill_done_at": segment.backfill_done_at.isoformat() if segment.backfill_done_at else None,
    }


def _truth_series(account: SimulatedAccount, query: dict[str, str]) -> tuple[int, Any]:
    try:
        segment_id = query["segment_id"]
        start = dt.date.fromisoformat(query["start"])
        end = dt.date.fromisoformat(query["end"])
    except KeyError as exc:
        return 400, {"error": f"missing query parameter {exc.args[0]}"}
    except ValueError as exc:
        return 400, {"error": f"dates must be YYYY-MM-DD: {exc}"}
    try:
        rows = account.series(segment_id, start, end)
    except KeyError:
        return 404, {"error": f"unknown segment {segment_id}"}
    except ValueError as exc:
        return 400, {"error": str(exc)}
    return 200, {
        "segment_id": segment_id,
        "timezone": account.timezone,
        "series": [{**row, "date": row["date"].isoformat()} for row in rows],
    }
