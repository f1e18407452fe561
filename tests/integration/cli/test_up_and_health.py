"""`aiaas up` starts the suite, `aiaas health` reads it (text and --json), errors are one clean line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

AIAAS = [sys.executable, "-m", "aiaas.cli.main"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIAAS, *args], capture_output=True, text=True, timeout=timeout)


def test_up_then_health_then_ctrl_c(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [*AIAAS, "up", "--ephemeral-ports", "--inference-replicas", "2", "--home", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert up.stdout is not None
    targets: dict[str, str] = {}
    deadline = time.monotonic() + 180
    for line in up.stdout:
        match = re.match(r"^(registry|training|serialization|inference(?:-\d)?)\s+(\S+)", line)
        if match:
            targets[match.group(1)] = match.group(2)
        if "SERVING" in line or time.monotonic() > deadline:
            break
    assert set(targets) == {"registry", "training", "serialization", "inference-1", "inference-2", "inference"}
    # "inference" names both replicas (a:p,b:p), which the CLI balances over.
    assert targets["inference"] == f"{targets['inference-1']},{targets['inference-2']}"
    try:
        for name, target in targets.items():
            result = run_cli("health", "--target", target, "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["target"] == {"target": target, "status": "SERVING"}, name
        table = run_cli("health", "--target", targets["inference-1"])
        assert "SERVING" in table.stdout and table.returncode == 0
    finally:
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=60)[0]
    assert up.returncode == 0, rest
    assert "inference-2 exit 0" in rest and "registry exit 0" in rest, rest


def test_unreachable_target_is_one_line_and_exit_3() -> None:
    result = run_cli("health", "--target", "127.0.0.1:1")
    assert result.returncode == 3
    assert "UNREACHABLE" in result.stdout
    result = run_cli("models", "list", "--target", "127.0.0.1:1")
    assert result.returncode == 3, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_bad_argument_is_usage_error() -> None:
    result = run_cli("health", "--timeout", "soon")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    result = run_cli("no-such-command")
    assert result.returncode == 2
