"""Admin endpoints under `/__simulator/` for when the simulator runs as a separate process.

They are not part of Klaviyo's API: no auth, no rate limits, not recorded in the request log.

* `GET  /__simulator/stats`: request counts by path and status, report requests served, rate-limit usage.
* `GET  /__simulator/truth/series?segment_id=..&start=YYYY-MM-DD&end=YYYY-MM-DD`: ground-truth rows.
* `POST /__simulator/segments/{id}/edit`: edit a segment's definition (bumps `updated`).
* `POST /__simulator/segments/{id}/delete`: delete a segment: it leaves listings, `GET /api/segments/{id}`
  answers 404, and reports leave it out of `results` (as Klaviyo does for a deleted segment).
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
    match = _DELETE.fullmatch(path)
    if match and method == "POST":
        segment_id = match.group("id")
        try:
            simulator.account.delete(segment_id)
        except KeyError:
            return 404, {"error": f"no live segment {segment_id}"}
        return 200, {"id": segment_id, "deleted": True}
    return 404, {"error": f"no admin endpoint {method} {path}"}


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
