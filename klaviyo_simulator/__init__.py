"""An offline Klaviyo: a local HTTP server with Klaviyo's segment and segment-report endpoints and rules.

It serves `GET /api/accounts`, `GET /api/segments[/{id}]`, `POST /api/segment-series-reports` and
`POST /api/segment-values-reports` with Klaviyo's auth, revision, scope, pagination, timeframe and rate-limit
rules, deterministic data from a seed, scripted faults and a request log, so the pipeline and its tests run
without a network or a real key. It has no Dagster imports.

    from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig

    with KlaviyoSimulator(SimulatorConfig(api_key="sim-key", segment_count=35)) as sim:
        ...  # point the Klaviyo client at sim.base_url with the key "sim-key"
        truth = sim.account.series(sim.account.segments[0].id, start, end)
"""

from .account import Segment, SimulatedAccount
from .account_config import SimulatorConfig
from .accounts import ServedAccount, ServedAccounts
from .faults import Fault, FaultPlan
from .recording import RecordedRequest
from .simulator import KlaviyoSimulator

__all__ = [
    "Fault",
    "FaultPlan",
    "KlaviyoSimulator",
    "RecordedRequest",
    "Segment",
    "ServedAccount",
    "ServedAccounts",
    "SimulatedAccount",
    "SimulatorConfig",
]
