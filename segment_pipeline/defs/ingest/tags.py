"""Listing segments with or without their tags, as KLAVIYO_TAGS says.

Tags need the tags:read scope, which keys made before tags were loaded do not have. By default (`auto`) a
key without it still loads every segment: the run logs a warning naming the scope, the stored tags are
left as they were (with the time they were loaded), and the materialization says `tags_loaded: false`.
`required` fails the run instead; `off` never asks for tags.
"""

from __future__ import annotations

import logging

from ...config import ConfigError
from ...klaviyo import KlaviyoAuthError, KlaviyoClient
from ...klaviyo.limits import SCOPE_TAGS
from ...klaviyo.listing import segments_without_tag_data

TAGS_SETTING = "KLAVIYO_TAGS"
TAG_MODES = ("auto", "required", "off")


def tags_mode(value: str | None) -> str:
    """KLAVIYO_TAGS, checked (unset or empty is `auto`)."""
    mode = (value or "auto").strip().lower()
    if mode not in TAG_MODES:
        raise ConfigError(f"{TAGS_SETTING}={mode!r} must be one of {', '.join(TAG_MODES)}")
    return mode


def list_segments_and_tags(
    client: KlaviyoClient, log: logging.Logger, mode: str
) -> tuple[list[dict], dict[str, str] | None]:
    """Every segment resource, and tag id -> name (None when tags were not loaded this run)."""
    if mode == "off":
        return client.list_segments(), None
    try:
        resources, tag_names = client.list_segments_with_tags()
    except KlaviyoAuthError as exc:
        if exc.status != 403 or mode == "required":
            raise
        log.warning(
            "the API key lacks the %s scope, so segment tags were not loaded this run and the stored tags are "
            "kept as last loaded; add %s to the key (or set %s=off to stop asking)",
            SCOPE_TAGS,
            SCOPE_TAGS,
            TAGS_SETTING,
        )
        return client.list_segments(), None
    unknown = segments_without_tag_data(resources)
    if unknown:
        log.warning(
            "%d of %d segments were listed without their tags (a tags relationship with no `data`, which the API "
            "allows): their stored tags are kept as last loaded",
            unknown,
            len(resources),
        )
    return resources, tag_names
