"""`segment-pipeline`'s own command line: the commands it hands to the simulator speak under its name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from klaviyo_simulator import command

from .dagster_processes import REPO


def test_demo_help_names_the_command_typed():
    shown = subprocess.run(
        [sys.executable, "-m", "segment_pipeline.cli", "demo", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: segment-pipeline demo [-h]"), shown.stdout
    assert "klaviyo-simulator" not in shown.stdout


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        # as `segment-pipeline` hands them over (cli.py), and as the simulator's own command
        (["--as", "segment-pipeline dev", "dev"], "segment-pipeline dev"),
        (["--as", "segment-pipeline simulator", "serve"], "segment-pipeline simulator"),
        (["demo"], "klaviyo-simulator demo"),
    ],
)
def test_usage_lines_and_errors_name_the_command_typed(argv, usage, capsys):
    with pytest.raises(SystemExit) as exited:
        command.main([*argv, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {usage} [-h]")
    with pytest.raises(SystemExit) as exited:
        command.main([*argv, "--no-such-option"])
    assert exited.value.code == 2
    assert f"{usage}: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err
