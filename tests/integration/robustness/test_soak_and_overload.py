"""Load: a bounded soak at concurrency 64 (zero errors, flat memory) and overload that sheds load.

The short form runs in `make test` (AIAAS_SOAK_SECONDS, default 20 s); `make soak` runs five minutes.
Traffic goes to loopback only, from a separate process, and stops by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.models import export_digits_mlp
from tests.support.processes import ServiceProcess, start_service


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run_load(address: str, concurrency: int, seconds: float, rows: int) -> dict[str, object]:
    """Run the load client in its own process and return its summary."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.robustness.load_client",
            address,
            "digits",
            str(concurrency),
            str(seconds),
            str(rows),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    summary: dict[str, object] = json.loads(completed.stdout)
    return summary


def test_soak_concurrency_64_zero_errors_flat_memory(inference_standalone: ServiceProcess) -> None:
    seconds = float(os.environ.get("AIAAS_SOAK_SECONDS", "20"))
    pid = inference_standalone.process.pid
    run_load(inference_standalone.address, 64, min(5.0, seconds / 4), 1)  # warm-up: sessions, arenas, caches
    baseline = rss_bytes(pid)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(rss_bytes(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    summary = run_load(inference_standalone.address, 64, seconds, 1)
    stop.set()
    sampler.join()
    final = rss_bytes(pid)
    codes = summary["codes"]
    assert isinstance(codes, dict)
    assert set(codes) == {"OK"}, summary
    assert codes["OK"] > seconds * 50, summary
    growth = (max([final, *samples]) - baseline) / baseline
    print(f"soak {seconds:.0f}s: {summary}, rss {baseline / 2**20:.0f} -> {final / 2**20:.0f} MiB ({growth:+.1%})")
    assert growth < 0.10, f"resident memory grew {growth:.1%} after warm-up ({baseline} -> {final})"


def test_overload_sheds_with_resource_exhausted(tmp_path: Path) -> None:
    """Far more in-flight requests than the queue holds: the excess is refused at once, latency stays bounded."""
    repo = tmp_path / "models"
    export_digits_mlp(repo / "digits" / "1" / "model.onnx")
    service = start_service(
        "inference",
        tmp_path / "home",
        env={
            "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repo),
            "AIAAS_INFERENCE_QUEUE_LIMIT": "8",
            "AIAAS_INFERENCE_INSTANCES": "1",
            "AIAAS_INFERENCE_BATCHING": "false",
        },
    )
    try:
        started = time.monotonic()
        summary = run_load(service.address, 256, 8.0, 2048)
        elapsed = time.monotonic() - started
        codes = summary["codes"]
        assert isinstance(codes, dict)
        assert codes.get("RESOURCE_EXHAUSTED", 0) > 0, summary
        assert codes.get("OK", 0) > 0, summary
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, summary
        # Admitted requests wait behind at most queue_limit others, so their latency stays bounded.
        assert float(summary["p99_ms"]) < 2000, summary  # type: ignore[arg-type]
        assert elapsed < 60
        assert service.process.poll() is None
    finally:
        assert service.terminate() == 0
