"""A small client of the Dagster webserver's GraphQL API: launch an asset backfill, follow it, cancel it, and
read when runs and their steps started and ended.

This is the API the Dagster UI itself uses, so a backfill launched here is the same object as one launched from
the UI: it shows in the Backfills tab, the daemon runs it, and its runs carry the `dagster/backfill` tag. No
import of Dagster here (it is a plain HTTP client), so the command line stays quick to start.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"

_LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConflict { message }
    ... on InvalidSubsetError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on PresetNotFoundError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id
      status
      runs(limit: 1000) { runId status tags { key value } assetSelection { path } }
      assetBackfillData { assetBackfillStatuses {
        __typename
        ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted numPartitionsInProgress
          numPartitionsMaterialized numPartitionsFailed }
        ... on UnpartitionedAssetStatus { assetKey { path } inProgress materialized failed }
      } }
      error { message }
    }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

_CANCEL = """
mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

_LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

_ASSETS = "{ assetNodes { assetKey { path } groupName } }"

_RUN_TIMES = """
query RunTimes($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs {
      results {
        runId status startTime endTime tags { key value } assetSelection { path }
        stepStats { stepKey status startTime endTime }
      }
    }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}
"""

# backfill statuses after which nothing more happens
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING"}
# run statuses that are over
RUN_ENDED = {"SUCCESS", "FAILURE", "CANCELED"}


class DagsterApiError(RuntimeError):
    """The webserver could not be reached, or refused or failed what was asked; the message says which."""


@dataclass(frozen=True)
class BackfillRun:
    run_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    asset_keys: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class StepTiming:
    """When one step of a run started and ended (seconds since the epoch; None while not started or not over)."""

    step_key: str
    status: str | None
    start: float | None
    end: float | None


@dataclass(frozen=True)
class RunTiming:
    """When a run started and ended, and its steps (seconds since the epoch, as Dagster's run storage holds them)."""

    run: BackfillRun
    start: float | None
    end: float | None
    steps: tuple[StepTiming, ...] = ()


@dataclass(frozen=True)
class AssetProgress:
    """One asset of a backfill: its partitions targeted, materialized, failed and in progress (1 or 0 each for
    an unpartitioned asset). A run may hold several accounts' steps: this, not the run's status, is per asset."""

    targeted: int
    materialized: int
    failed: int
    in_progress: int


@dataclass(frozen=True)
class BackfillStatus:
    backfill_id: str
    status: str
    runs: tuple[BackfillRun, ...]
    error: str | None = None
    assets: dict[tuple[str, ...], AssetProgress] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED and all(run.status in RUN_ENDED for run in self.runs)


class DagsterApi:
    """The webserver at `url` (e.g. http://127.0.0.1:3000, or a deployment's address)."""

    def __init__(self, url: str = DEFAULT_DAGSTER_URL, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DagsterApi:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}})
        except httpx.HTTPError as exc:
            raise DagsterApiError(
                f"the Dagster webserver at {self.url} cannot be reached ({exc}). Start Dagster (`make dev`, or "
                "`dagster dev` / your deployment's webserver with its daemon) or pass its address with --dagster-url"
            ) from None
        if response.status_code != 200:
            raise DagsterApiError(f"the Dagster webserver at {self.url} answered {response.status_code}")
        body = response.json()
        if body.get("errors"):
            raise DagsterApiError("; ".join(str(error.get("message")) for error in body["errors"]))
        return body["data"]

    def wait_until_loaded(self, timeout: float = 120.0) -> None:
        """Wait for the webserver to answer with every code location loaded; raise what failed to load."""
        deadline = time.monotonic() + timeout
        last = "not reachable yet"
        while time.monotonic() < deadline:
            try:
                entries = self._query(_LOCATIONS)["workspaceOrError"].get("locationEntries") or []
            except DagsterApiError as exc:
                last = str(exc)
                time.sleep(0.5)
                continue
            errors = [
                entry["locationOrLoadError"].get("message")
                for entry in entries
                if (entry.get("locationOrLoadError") or {}).get("__typename") == "PythonError"
            ]
            if errors:
                raise DagsterApiError(f"the code location failed to load: {errors[0]}")
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return
            last = "loading the code location"
            time.sleep(0.5)
        raise DagsterApiError(f"Dagster at {self.url} did not get ready within {timeout:.0f} s ({last})")

    def asset_groups(self) -> dict[tuple[str, ...], str]:
        """Every asset with a definition, by key, with its group."""
        nodes = self._query(_ASSETS)["assetNodes"]
        return {tuple(node["assetKey"]["path"]): node["groupName"] for node in nodes}

    def launch_backfill(
        self,
        partitions_by_asset: dict[tuple[str, ...], tuple[str, str] | None],
        tags: dict[str, str] | None = None,
        title: str | None = None,
    ) -> str:
        """Launch one asset backfill; returns its id.

        Args:
            partitions_by_asset: Each asset key (as its path) with its partition range (first, last key), or
                None for an unpartitioned asset.
            tags: Tags of the backfill, copied onto every run it starts.
            title: The backfill's title in the UI.
        """
        selectors = []
        for path, window in partitions_by_asset.items():
            selector: dict[str, Any] = {"assetKey": {"path": list(path)}}
            if window is not None:
                selector["partitions"] = {"range": {"start": window[0], "end": window[1]}}
            selectors.append(selector)
        params: dict[str, Any] = {
            "partitionsByAssets": selectors,
            "tags": [{"key": key, "value": value} for key, value in (tags or {}).items()],
        }
        if title:
            params["title"] = title
        result = self._query(_LAUNCH, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DagsterApiError(f"Dagster refused the backfill ({result['__typename']}): {_message(result)}")
        return result["backfillId"]

    def backfill(self, backfill_id: str) -> BackfillStatus:
        result = self._query(_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise DagsterApiError(f"backfill {backfill_id}: {_message(result)}")
        runs = tuple(_run(run) for run in result.get("runs") or [])
        assets = {
            tuple(entry["assetKey"]["path"]): _progress(entry)
            for entry in (result.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
        }
        return BackfillStatus(result["id"], result["status"], runs, (result.get("error") or {}).get("message"), assets)

    def run_timings(self, tags: dict[str, str] | None = None, limit: int = 1000) -> list[RunTiming]:
        """The instance's runs (newest first), those carrying every one of `tags` when given, with their times."""
        run_filter = {"tags": [{"key": key, "value": value} for key, value in tags.items()]} if tags else None
        result = self._query(_RUN_TIMES, {"filter": run_filter, "limit": limit})["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterApiError(f"the runs could not be read: {_message(result)}")
        return [
            RunTiming(
                _run(run),
                run.get("startTime"),
                run.get("endTime"),
                tuple(
                    StepTiming(step["stepKey"], step.get("status"), step.get("startTime"), step.get("endTime"))
                    for step in run.get("stepStats") or []
                ),
            )
            for run in result["results"]
        ]

    def cancel_backfill(self, backfill_id: str) -> None:
        result = self._query(_CANCEL, {"id": backfill_id})["cancelPartitionBackfill"]
        if result["__typename"] != "CancelBackfillSuccess":
            raise DagsterApiError(f"backfill {backfill_id} could not be canceled: {_message(result)}")


def _run(run: dict[str, Any]) -> BackfillRun:
    return BackfillRun(
        run["runId"],
        run["status"],
        {tag["key"]: tag["value"] for tag in run.get("tags") or []},
        tuple(tuple(key["path"]) for key in run.get("assetSelection") or []),
    )


def _progress(entry: dict[str, Any]) -> AssetProgress:
    if entry["__typename"] == "AssetPartitionsStatusCounts":
        return AssetProgress(
            entry["numPartitionsTargeted"],
            entry["numPartitionsMaterialized"],
            entry["numPartitionsFailed"],
            entry["numPartitionsInProgress"],
        )
    return AssetProgress(1, int(entry["materialized"]), int(entry["failed"]), int(entry["inProgress"]))


def _message(result: dict[str, Any]) -> str:
    if result.get("message"):
        return str(result["message"])
    if result.get("errors"):
        return "; ".join(str(error.get("message")) for error in result["errors"])
    return json.dumps(result)
