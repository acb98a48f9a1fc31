"""Each account's first daily partition: set in the accounts file, or fixed when the account is first loaded.

Klaviyo reports reach back one year, so a partition list that starts at its data floor (2023-06-01) would
show most days as missing forever. A start recomputed at every load ("a year ago") moves by itself: processes
that loaded the code on different days disagree on the partitions, and keys fall off the list at midnight
(stack-pitfalls §4.1). So the start is computed once, on the day the account is first loaded (the oldest day
Klaviyo then reports on), written to `<state dir>/history_start/<account>.date`, and read back ever after.
No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

from .accounts import AccountSettings
from .config import ConfigError
from .klaviyo.limits import REPORTING_DATA_FLOOR
from .klaviyo.planner import earliest_reportable_day


def history_start_path(directory: Path, account_name: str) -> Path:
    return directory / f"{account_name}.date"


def fixed_history_start(account: AccountSettings, directory: Path, now: dt.datetime | None = None) -> dt.date:
    """The account's first daily partition.

    Args:
        account: The account; its `history_start`, when set, wins.
        directory: Where fixed starts are kept (`StorageSettings.history_start_dir`).
        now: The moment of a first load (default: the clock).

    Raises:
        ConfigError: The stored start cannot be read or written; the message names the file and the fix.
    """
    if account.history_start is not None:
        return account.history_start
    path = history_start_path(directory, account.name)
    stored = _read(path)
    if stored is not None:
        return stored
    today = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(account.timezone)).date()
    start = earliest_reportable_day(today)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".{account.name}.{os.getpid()}.tmp"
        temporary.write_text(f"{start.isoformat()}\n", encoding="ascii")
        try:
            # a hard link appears whole or not at all, and never replaces a start another process wrote first
            os.link(temporary, path)
        except FileExistsError:
            return _read(path) or start
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"account {account.name!r}: its first daily partition cannot be recorded in {path} ({exc.strerror}). "
            f"Make {directory} writable, or write `history_start: {start}` for the account in the accounts file "
            "(KLAVIYO_HISTORY_START without one)"
        ) from None
    return start


def _read(path: Path) -> dt.date | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}): delete it to fix the start again from today") from None
    try:
        start = dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{path} holds {text[:20]!r}, not a date: write the account's first day (YYYY-MM-DD) there, or delete "
            "the file to fix it again at one year before today"
        ) from None
    if start < REPORTING_DATA_FLOOR:
        raise ConfigError(
            f"{path} holds {start}, before Klaviyo's first day of report data ({REPORTING_DATA_FLOOR}): write a later "
            "date there, or delete the file"
        )
    return start
