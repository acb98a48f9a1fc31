"""Segment definitions built from Klaviyo's condition types, shaped exactly as the OpenAPI schemas require.

A definition is `{"condition_groups": [{"conditions": [...]}, ...]}`: groups are ANDed, the conditions inside a
group are ORed. Each builder below produces one condition type. Two details of the spec matter here:

* numeric filter values are `oneOf: [integer, number]`, so an integer JSON value matches both branches and
  fails validation; the builders therefore emit floats (`20.0`), which match only `number`;
* the marketing-consent double opt-in filter field is `is_double_opt_in` in the spec.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from .account_config import derive_id

Condition = dict[str, Any]
Definition = dict[str, Any]

_CITIES = ("Boston", "Columbus", "São Paulo", "Zürich", "Kraków", "Montréal")
_POSTAL_CODES = ("02141", "43004", "10001", "94107", "60601")


def _relative_date(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "date",
        "operator": "in-the-last",
        "quantity": rng.choice((7, 14, 30, 60, 90, 180)),
        "unit": "day",
    }


def _group_membership(rng: random.Random, seed: int) -> Condition:
    condition: Condition = {
        "type": "profile-group-membership",
        "is_member": True,
        # at this time Klaviyo accepts exactly one list id here
        "group_ids": [derive_id("list", seed, rng.randrange(8))],
    }
    # Klaviyo writes `"timeframe_filter": null` for "ever a member"; the spec's nullable oneOf makes OpenAPI
    # validators reject that null, so the simulator leaves the member out instead (equivalent meaning)
    if rng.random() < 0.5:
        condition["timeframe_filter"] = _relative_date(rng)
    return condition


def _no_group_membership(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-group-membership",
        "is_member": False,
        "group_ids": [derive_id("list", seed, rng.randrange(8))],
    }


def _metric(rng: random.Random, seed: int) -> Condition:
    measurement = rng.choice(("count", "sum"))
    condition: Condition = {
        "type": "profile-metric",
        "metric_id": derive_id("metric", seed, rng.randrange(6)),
        "measurement": measurement,
        "measurement_filter": {
            "type": "numeric",
            "operator": rng.choice(("greater-than", "greater-than-or-equal", "equals")),
            "value": float(rng.choice((0, 1, 2, 5))) if measurement == "count" else float(rng.choice((50, 100, 200))),
        },
        "timeframe_filter": _relative_date(rng) if rng.random() < 0.6 else {"type": "date", "operator": "alltime"},
    }
    if rng.random() < 0.5:
        condition["metric_filters"] = [
            {"property": "country", "filter": {"type": "string", "operator": "equals", "value": "United States"}}
        ]
    return condition


def _marketing_consent(rng: random.Random, seed: int) -> Condition:
    choice = rng.randrange(3)
    if choice == 0:
        consent = {
            "channel": "email",
            "can_receive_marketing": True,
            "consent_status": {
                "subscription": "subscribed",
                "filters": [
                    {"field": "is_double_opt_in", "filter": {"type": "boolean", "operator": "equals", "value": True}}
                ],
            },
        }
    elif choice == 1:
        consent = {"channel": "sms", "can_receive_marketing": True, "consent_status": {"subscription": "subscribed"}}
    else:
        consent = {
            "channel": "email",
            "can_receive_marketing": False,
            "consent_status": {"subscription": "unsubscribed"},
        }
    return {"type": "profile-marketing-consent", "consent": consent}


def _postal_code_distance(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-postal-code-distance",
        "country_code": "USA",
        "postal_code": rng.choice(_POSTAL_CODES),
        "unit": rng.choice(("miles", "kilometers")),
        "filter": {
            "type": "numeric",
            "operator": rng.choice(("less-than", "greater-than")),
            "value": float(rng.choice((5, 10, 20, 50))),
        },
    }


def _property(rng: random.Random, seed: int) -> Condition:
    choice = rng.randrange(4)
    if choice == 0:
        return {
            "type": "profile-property",
            "property": "location['city']",
            "filter": {"type": "string", "operator": "equals", "value": rng.choice(_CITIES)},
        }
    if choice == 1:
        return {
            "type": "profile-property",
            "property": "email",
            "filter": {"type": "string", "operator": "ends-with", "value": rng.choice(("@hotmail.com", "@gmail.com"))},
        }
    if choice == 2:
        return {
            "type": "profile-property",
            "property": "properties['vip']",
            "filter": {"type": "boolean", "operator": "equals", "value": rng.random() < 0.5},
        }
    return {
        "type": "profile-property",
        "property": "properties['loyalty_tier']",
        "filter": {"type": "existence", "operator": "is-set"},
    }


def _region(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-region",
        "in_region": rng.random() < 0.7,
        "region": rng.choice(("european_union", "united_states")),
    }


def _predictive_numeric(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-predictive-analytics",
        "dimension": rng.choice(("average_order_value", "predicted_clv", "churn_probability")),
        "filter": {"type": "numeric", "operator": "greater-than-or-equal", "value": float(rng.choice((0.5, 100, 250)))},
    }


def _predictive_gender(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-predictive-analytics",
        "dimension": "predicted_gender",
        "filter": {
            "type": "string",
            "operator": "equals",
            "value": rng.choice(("likely_female", "likely_male", "uncertain")),
        },
    }


def _channel_affinity(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-predictive-analytics",
        "dimension": "channel_affinity",
        "measurement": "rank",
        "predicted_channel": rng.choice(("email", "sms", "push")),
        "filter": {"type": "string", "operator": "equals", "value": rng.choice(("high", "medium", "low"))},
    }


def _metric_funnel(rng: random.Random, seed: int) -> Condition:
    return {
        "type": "profile-metric-funnel",
        "timeframe_filter": _relative_date(rng),
        "completion_window_seconds": rng.choice(("DAYS_1", "DAYS_3", "WEEKS_1")),
        "steps": [
            {"metric_exists": True, "metric_id": derive_id("metric", seed, 0)},
            {"metric_exists": False, "metric_id": derive_id("metric", seed, 1)},
        ],
    }


# Order matters only for coverage: segment i starts from builder i, so the first dozen segments of any
# account show every condition type at least once.
CONDITION_BUILDERS: tuple[Callable[[random.Random, int], Condition], ...] = (
    _property,
    _group_membership,
    _metric,
    _marketing_consent,
    _postal_code_distance,
    _region,
    _predictive_numeric,
    _predictive_gender,
    _no_group_membership,
    _channel_affinity,
    _metric_funnel,
)


def build_definition(rng: random.Random, seed: int, first_builder: int) -> Definition:
    """Build a definition of one to three condition groups.

    Args:
        rng: Random source owned by the segment, so definitions don't depend on other segments.
        seed: Account seed, used for list and metric ids.
        first_builder: Index of the condition builder used first (drives coverage of all types).

    Returns:
        A definition dict that validates against the spec's `SegmentDefinition`.
    """
    groups = []
    builder_index = first_builder
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        conditions = []
        for _ in range(rng.choice((1, 1, 2))):
            conditions.append(CONDITION_BUILDERS[builder_index % len(CONDITION_BUILDERS)](rng, seed))
            builder_index += 1 + rng.randrange(3)
        groups.append({"conditions": conditions})
    return {"condition_groups": groups}


def edited_definition(current: Definition, seed: int, segment_id: str, edit_number: int) -> Definition:
    """Return a deterministic edit of a definition: a new condition group is added, the oldest dropped past three.

    Args:
        current: The definition before the edit (left untouched).
        seed: Account seed.
        segment_id: Id of the edited segment.
        edit_number: 1 for the first edit of this segment, 2 for the second, and so on.

    Returns:
        A new definition that differs from `current`.
    """
    rng = random.Random(f"edit:{seed}:{segment_id}:{edit_number}")
    new = copy.deepcopy(current)
    groups = new.setdefault("condition_groups", [])
    builder = CONDITION_BUILDERS[(edit_number + rng.randrange(len(CONDITION_BUILDERS))) % len(CONDITION_BUILDERS)]
    groups.append({"conditions": [builder(rng, seed)]})
    if len(groups) > 3:
        groups.pop(0)
    if new == current:  # pragma: no cover - only if the builder repeated the dropped group exactly
        groups[-1]["conditions"].append(_region(rng, seed))
    return new
