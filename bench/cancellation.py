"""What the inference service's cancellation and deadline checks cost: requests/s with them on ÷ off.

Two inference processes on the same model repository, one with ``AIAAS_INFERENCE_CANCEL_CHECKS=false``,
each loaded by its own load process (as in bench/inference.py) at the same time: on a shared machine
whose load swings from second to second, both sides of a round see the same swings, and the ratio is
how much work per request the checks add. The record is the median of the rounds' ratios. Requests
carry the load's 30 s deadline, so the deadline bookkeeping is priced too.

Record: ``inference.rps_cancel_checks_on_vs_off.<model>.c<N>`` (target >= 0.97).
"""

from __future__ import annotations

import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import Record, median
from bench.inference import _start, request_bytes, run_load

MODELS = ("mlp", "transformer")
CONCURRENCY = 8


def _start_inference(home: Path, repository: Path, checks: bool) -> tuple[subprocess.Popen[bytes], str]:
    label = "checks-on" if checks else "checks-off"
    port_file = home / f"{label}.port"
    env = {
        "AIAAS_HOME": str(home / label),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_INSTANCES": "2",
        "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
        "AIAAS_INFERENCE_CANCEL_CHECKS": str(checks).lower(),
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file)]
    return _start(args, env, port_file, home / f"{label}.log")


def run(quick: bool) -> list[Record]:
    """Rounds per model at 8 requests in flight on each server (quick: 3 rounds of 1 s; full: 9 of 2 s)."""
    from aiaas_services.inference.examples import build_repository

    seconds, warmup, pairs = (1.0, 0.3, 3) if quick else (2.0, 0.5, 9)
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="bench-cancel-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", MODELS)
        started = {checks: _start_inference(home, repository, checks) for checks in (True, False)}
        try:
            for model in MODELS:
                payload = home / f"{model}.bin"
                payload.write_bytes(request_bytes(model))
                ratios, rps = [], {True: [], False: []}
                for _ in range(pairs):
                    with ThreadPoolExecutor(2) as pool:
                        running = {
                            checks: pool.submit(run_load, started[checks][1], payload, CONCURRENCY, seconds, warmup)
                            for checks in (True, False)
                        }
                        got = {checks: future.result() for checks, future in running.items()}
                    for checks, result in got.items():
                        if result["errors"]:
                            raise RuntimeError(f"errors under load: {result['errors']}")
                        rps[checks].append(result["rps"])
                    ratios.append(got[True]["rps"] / got[False]["rps"])
                records.append(
                    Record(
                        f"inference.rps_cancel_checks_on_vs_off.{model}.c{CONCURRENCY}",
                        median(ratios),
                        "ratio",
                        "higher",
                        {
                            "what": "req/s with cancellation/deadline checks on ÷ off, loaded at the same time "
                            "(median of the rounds' ratios)",
                            "rounds": pairs,
                            "seconds": seconds,
                            "rps_on": round(median(rps[True]), 1),
                            "rps_off": round(median(rps[False]), 1),
                            "request_deadline_s": 30.0,
                            "target": 0.97,
                        },
                    )
                )
        finally:
            for process, _ in started.values():
                process.terminate()
            for process, _ in started.values():
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
    return records
