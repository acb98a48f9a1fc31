"""`segment-pipeline`'s own command line: every command's usage lines and errors name the command typed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from klaviyo_simulator import command

from .dagster_processes import REPO


def cli(*args: str) -> subprocess.CompletedProcess:
    """`segment-pipeline ...` as a process (`simulator` replaces the process with the simulator's own)."""
    return subprocess.run(
        [sys.executable, "-m", "segment_pipeline.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", ["demo", "demo-scale", "dev", "simulator", "backfill", "lake"])
def test_usage_lines_and_errors_name_the_command_typed(name):
    shown = cli(name, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: segment-pipeline {name} [-h]"), shown.stdout
    assert "klaviyo-simulator" not in shown.stdout
    refused = cli(name, "--no-such-option")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    # `lake` first asks for its subcommand; the others refuse the option itself
    assert f"segment-pipeline {name}: error: " in refused.stderr, refused.stderr
    assert name == "lake" or "unrecognized arguments: --no-such-option" in refused.stderr
    assert "klaviyo-simulator" not in refused.stderr


def test_without_a_command_the_commands_are_listed():
    listed = cli()
    assert listed.returncode == 2
    assert listed.stderr.startswith("usage: segment-pipeline {backfill,demo,demo-scale,dev,lake,simulator}"), (
        listed.stderr
    )
    helped = cli("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: segment-pipeline {"), helped.stdout


def test_the_simulators_own_command_keeps_its_name(capsys):
    with pytest.raises(SystemExit) as exited:
        command.main(["serve", "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: klaviyo-simulator serve [-h]")
    with pytest.raises(SystemExit) as exited:
        command.main(["serve", "--no-such-option"])
    assert exited.value.code == 2
    assert "klaviyo-simulator serve: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err
