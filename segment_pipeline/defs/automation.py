"""How the shared models, the analyst copy and the report follow the accounts' loads: Dagster's declarative
automation, evaluated by the daemon's automation sensor.

Each account's job loads only that account. The shared assets carry `SHARED_BUILD`: they are requested once
something upstream has loaded since they were last handled, and only when no upstream run is still going and
they are not already being built. However many accounts finish, and in whatever order, the models are built
after the last one that was running, in one run the UI shows like any other. A backfill that selects them
builds them itself (they are then "in progress" for the condition, so nothing is built twice).
"""

from __future__ import annotations

import dagster as dg

SHARED_BUILD = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after the accounts' loads")

AUTOMATION_SENSOR = "shared_build_sensor"
# how often the daemon evaluates the condition: the build starts within this long of the last load
AUTOMATION_INTERVAL_SECONDS = 30


def build_automation_sensor(target: dg.AssetSelection) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates `SHARED_BUILD` (on by default: the daemon runs it)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=target,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_INTERVAL_SECONDS,
        # one run, not a backfill, for the one unpartitioned build
        emit_backfills=False,
        description=(
            "Builds the dbt models, then the analyst copy and the growth report, after the accounts' loads: "
            "once something upstream loaded and no upstream run is still going."
        ),
    )
