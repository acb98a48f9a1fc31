"""dagster-dbt as this pipeline uses it: driving the `dbt` executable, without dbt-core's Python library.

dagster-dbt works in two ways. Where it can import dbt-core it does so the moment it is imported (about 2-3 s
of CPU and some 100 MB in every process that loads the code location: `dagster definitions validate`, each
run, the daemon's sensors), parses dbt selections with it, and opens a dbt adapter in the run's own process
before every dbt command. Where it cannot (dbt Fusion, or dbt-core installed in another environment), it runs
the `dbt` executable and reads its structured output, which is all this pipeline needs: it selects every node
and asks dbt for no relation metadata.

So dagster-dbt is imported here as if dbt-core were not importable: `dbt.version`, the module it tries, is
hidden during that one import and put back after, so dbt-core itself stays importable for anything else.
`DbtCli` skips the in-process adapter, which only serves column and row-count metadata (not requested), and
which dagster-dbt would otherwise try to open and warn about on every dbt command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

_PROBE = "dbt.version"  # dagster_dbt.compat imports this to decide whether dbt-core is importable


def _import_without_dbt_core() -> Any:
    if "dagster_dbt" in sys.modules:  # imported earlier in this process (a test, a tool): use it as it is
        return sys.modules["dagster_dbt"]
    absent = object()
    previous = sys.modules.get(_PROBE, absent)
    sys.modules[_PROBE] = None  # type: ignore[assignment]  # None in sys.modules makes its import fail
    try:
        return importlib.import_module("dagster_dbt")
    finally:
        if previous is absent:
            del sys.modules[_PROBE]
        else:
            sys.modules[_PROBE] = previous


_import_without_dbt_core()

from dagster_dbt import (  # noqa: E402  - after the import above, which decides how dagster-dbt loads
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)


class DbtCli(DbtCliResource):
    """dagster-dbt's CLI resource, without the dbt adapter it would open in this process for each command."""

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


__all__ = ["DagsterDbtTranslator", "DagsterDbtTranslatorSettings", "DbtCli", "DbtProject", "dbt_assets"]
