"""bench/workers.py's CPU accounting: server CPU by kind of thread and per process, and the ratio it implies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workers import cpu_breakdown, cpu_by_part

BURN = "import time\nwhile time.thread_time() < 0.3: pass\nprint('done', flush=True)\ntime.sleep(30)\n"


def test_cpu_by_part_splits_a_supervised_tree_into_supervisor_main_threads_and_workers() -> None:
    # A shell standing in for the supervisor, one child burning 0.3 s of CPU on its main thread.
    parent = subprocess.Popen(
        ["bash", "-c", f'{sys.executable} -c "$0" & wait', BURN], stdout=subprocess.PIPE, text=True
    )
    children: list[str] = []
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "done"
        parts = cpu_by_part(parent.pid)
    finally:
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        parent.wait(10)
    assert set(parts) >= {"supervisor", "main", "grpc_event_engine", "other_threads"}
    assert parts["main"] >= 0.25  # the child's loop, counted as a worker's main thread
    assert parts["supervisor"] < 0.2  # bash waiting
    workers = [key for key in parts if key.startswith("worker_")]
    assert len(workers) == 1 and parts[workers[0]] >= parts["main"]


def test_cpu_breakdown_implies_the_ratio_from_the_main_thread_at_one_worker() -> None:
    def run(rps: float, main: float, engine: float, server: float, ghz: float, **workers: float) -> dict:
        parts = {"main": main, "grpc_event_engine": engine, **workers}
        return {
            "rps": rps,
            "cpu_us_per_request": ghz,
            "server_cpu_us_per_request": server,
            "server_parts_us_per_request": parts,
            "cores_used": rps * (server + ghz) / 1e6,
            "machine_busy_cores": 2.0,
        }

    runs = {
        "1": [run(2000, 500, 90, 650, 200)],
        "2": [run(2350, 480, 90, 650, 200, worker_7=390, worker_8=260)],
    }
    params = cpu_breakdown(runs)
    # workers=2 fills both cores at 850 µs a request; workers=1 is held by its 500 µs main thread.
    assert params["ratio_ceiling_2_cores"] == pytest.approx(2 * 500 / 850, abs=1e-3)
    assert params["main_thread_cores_1"] == pytest.approx(1.0)
    assert params["cores_used_2"] == pytest.approx(2.0, abs=0.01)
    assert params["worker_cpu_share_2"] == [0.6, 0.4]
    assert params["server_cpu_us_per_request_by_thread_2"] == {"main": 480, "grpc_event_engine": 90}
    assert "worker_cpu_share_1" not in params
