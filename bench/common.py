"""What every benchmark suite shares: the record type, medians, machine facts and starting a server."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Record:
    """One measured figure; ratios of two things measured side by side are what we track."""

    name: str
    value: float
    unit: str
    better: str  # "higher" or "lower"
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def median(values: Sequence[float]) -> float:
    """Median of repeats (robust on noisy shared machines)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[index])


def machine() -> dict[str, Any]:
    """CPU count, GPU and ONNX Runtime facts for the results file."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "gpu": None}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["providers"] = ort.get_available_providers()
    except ImportError:  # pragma: no cover
        pass
    return info


def start_process(
    args: list[str], env: dict[str, str], port_file: Path, log: Path, timeout: float = 120.0
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m <args>`` from the repository root with ``env`` on top of ours, output to ``log``; returns
    once the server has written its port to ``port_file`` (its loopback address), raising with the log's
    tail if it exits or times out first."""
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{args[0]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return process, f"127.0.0.1:{int(port_file.read_text())}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far, from Linux /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
