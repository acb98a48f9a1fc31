"""Without an accounts file: the single-account variables, as one account named `default`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..config import DEFAULT_ACCOUNT_NAME, ConfigError, configured_timezone
from .settings import FIELD_HINTS, SINGLE_ACCOUNT_KEY_ENV, Accounts, AccountSettings


def single_account_from_env(env: Mapping[str, str] | None = None) -> Accounts:
    """The one account the single-account variables describe, named `default`.

    Its key is read from `KLAVIYO_API_KEY` when a run starts (as before), so loading works without it.

    Raises:
        ConfigError: A variable has a value the pipeline cannot use; the message names it.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {
        "name": DEFAULT_ACCOUNT_NAME,
        "api_key_env": SINGLE_ACCOUNT_KEY_ENV,
        "timezone": configured_timezone(dict(env)),
    }
    variables = {
        "report_rate_per_minute": ("KLAVIYO_REPORT_RATE_PER_MINUTE", float),
        "report_daily_limit": ("KLAVIYO_REPORT_DAILY_LIMIT", int),
        "lookback_days": ("SERIES_LOOKBACK_DAYS", int),
    }
    for field, (variable, cast) in variables.items():
        raw = (env.get(variable) or "").strip()
        if not raw:
            continue
        try:
            values[field] = cast(raw)
        except ValueError:
            kind = "a number" if cast is float else "a whole number"
            raise ConfigError(f"{variable}={raw!r} is not {kind}. Fix: {FIELD_HINTS[field]}") from None
    try:
        account = AccountSettings.model_validate(values)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = str(first["loc"][0])
        variable = variables[field][0] if field in variables else "KLAVIYO_TIMEZONE"
        raise ConfigError(f"{variable}={env.get(variable)!r}: {first['msg']}. Fix: {FIELD_HINTS[field]}") from None
    return Accounts((account,), None)
