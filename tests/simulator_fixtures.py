"""Pytest fixtures that run the Klaviyo simulator and check every exchange against Klaviyo's OpenAPI document.

At teardown, every response the simulator sent and every request our own client sent (User-Agent starting
with "segment-pipeline/") is validated with `tests.openapi_contract`. Exchanges shaped by a scripted fault
are exempt (they break the contract on purpose). Without the OpenAPI document only this check is skipped;
the test itself still runs. Mark a test `@pytest.mark.no_contract_check` to opt out entirely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from klaviyo_simulator.foreign_host import ForeignHost
from klaviyo_simulator.recording import RecordedRequest
from tests.openapi_contract import (
    Contract,
    ContractError,
    load_contract,
    require_contract,
    validate_request,
    validate_response,
)

TEST_API_KEY = "sim-test-key"
CLIENT_USER_AGENT_PREFIX = "segment-pipeline/"
# Small and fixed, so tests are fast and failures reproducible; override per test through make_simulator.
DEFAULT_SIMULATOR_CONFIG: dict[str, Any] = {"api_key": TEST_API_KEY, "segment_count": 12, "seed": 7}

MakeSimulator = Callable[..., KlaviyoSimulator]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_contract_check: skip the OpenAPI check of the simulator's traffic")


def _uses_sparse_fieldsets(entry: RecordedRequest) -> bool:
    # the spec marks is_active/is_processing/is_starred required, yet the API honours fields[...] and leaves
    # them out when not asked for; such responses are correct even though the schema can't say so
    return any(name.startswith("fields[") for name in entry.query)


def contract_problems(simulator: KlaviyoSimulator, contract: Contract | None = None) -> list[str]:
    """Validate a simulator's recorded traffic against the OpenAPI document.

    Args:
        simulator: A simulator whose `requests` to check.
        contract: The loaded contract (loaded on demand when omitted).

    Returns:
        One message per request or response that doesn't match the spec.
    """
    contract = contract or load_contract()
    if contract is None:
        return []
    problems: list[str] = []
    for number, entry in enumerate(simulator.requests, start=1):
        where = f"request #{number} {entry.method} {entry.path}"
        user_agent = entry.headers.get("User-Agent", "")
        # a request to a path the spec lacks was already refused with a 404 that the test sees
        answered_unknown_path = entry.status == 404 and contract.template_for(entry.path) is None
        if user_agent.startswith(CLIENT_USER_AGENT_PREFIX) and not answered_unknown_path:
            try:
                validate_request(entry.method, entry.path, entry.query, entry.headers, entry.json)
            except ContractError as error:
                problems.append(f"{where}: {error}")
        if entry.fault is not None or entry.status is None or entry.response_json is None:
            continue
        if _uses_sparse_fieldsets(entry):
            continue
        try:
            validate_response(entry.method, entry.path, entry.status, entry.response_json)
        except ContractError as error:
            problems.append(f"{where}: {error}")
    return problems


@pytest.fixture
def openapi_contract() -> Contract:
    """Klaviyo's OpenAPI document, indexed; skips the test when the document is not available."""
    return require_contract()


@pytest.fixture
def make_simulator(request: pytest.FixtureRequest) -> Iterator[MakeSimulator]:
    """Factory for running simulators: `make_simulator(segment_count=95, speed=60.0, ...)`.

    Keyword arguments override `DEFAULT_SIMULATOR_CONFIG` and go to `SimulatorConfig`. For several accounts,
    `make_simulator(accounts={"east": {"api_key": "k1", "seed": 1}, ...})`: each account's overrides apply to
    `DEFAULT_SIMULATOR_CONFIG` too. Every simulator is stopped at teardown, then its traffic is checked
    against the OpenAPI document.
    """
    started: list[KlaviyoSimulator] = []

    def factory(accounts: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> KlaviyoSimulator:
        if accounts is not None:
            configs = {
                name: SimulatorConfig(**{**DEFAULT_SIMULATOR_CONFIG, **overrides, **account})
                for name, account in accounts.items()
            }
            simulator = KlaviyoSimulator(accounts=configs).start()
            started.append(simulator)
            return simulator
        config = SimulatorConfig(**{**DEFAULT_SIMULATOR_CONFIG, **overrides})
        simulator = KlaviyoSimulator(config).start()
        started.append(simulator)
        return simulator

    yield factory

    for simulator in started:
        simulator.stop()
    if request.node.get_closest_marker("no_contract_check") is not None:
        return
    contract = load_contract()
    if contract is None:
        return  # the document is absent: skip only this check, the test itself already ran
    problems = [problem for simulator in started for problem in contract_problems(simulator, contract)]
    if problems:
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        pytest.fail(f"simulator traffic does not match Klaviyo's OpenAPI document:\n{shown}{more}", pytrace=False)


@pytest.fixture
def simulator(make_simulator: MakeSimulator) -> KlaviyoSimulator:
    """A running simulator with `DEFAULT_SIMULATOR_CONFIG` (key `TEST_API_KEY`, 12 segments, real-time limits)."""
    return make_simulator()


@pytest.fixture
def foreign_host() -> Iterator[ForeignHost]:
    """A second real HTTP server, for a host the API key must never reach; it records what arrives."""
    with ForeignHost() as host:
        yield host
