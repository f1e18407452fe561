"""What the inference service's cancellation and deadline checks cost: requests/s with them on ÷ off.

Two inference processes on the same model repository, one with ``AIAAS_INFERENCE_CANCEL_CHECKS=false``;
the load (a separate process, as in bench/inference.py) alternates between them in adjacent pairs whose
order flips, and the record is the median of the per-pair ratios. Requests carry a 30 s deadline, as a
careful client's do, so the deadline bookkeeping is priced too.

Record: ``inference.rps_cancel_checks_on_vs_off.<model>.c<N>`` (target >= 0.97).
"""

from __future__ import annotations

import subprocess
import tempfile
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
    """Paired rounds per model at 8 requests in flight (quick: 3 pairs of 1 s; full: 7 pairs of 3 s)."""
    from aiaas_services.inference.examples import build_repository

    seconds, warmup, pairs = (1.0, 0.3, 3) if quick else (3.0, 0.5, 7)
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
                for pair in range(pairs):
                    order = (True, False) if pair % 2 == 0 else (False, True)
                    got = {}
                    for checks in order:
                        result = run_load(started[checks][1], payload, CONCURRENCY, seconds, warmup)
                        if result["errors"]:
                            raise RuntimeError(f"errors under load: {result['errors']}")
                        got[checks] = result["rps"]
                        rps[checks].append(result["rps"])
                    ratios.append(got[True] / got[False])
                records.append(
                    Record(
                        f"inference.rps_cancel_checks_on_vs_off.{model}.c{CONCURRENCY}",
                        median(ratios),
                        "ratio",
                        "higher",
                        {
                            "what": "req/s with cancellation/deadline checks on ÷ off (median of paired ratios)",
                            "pairs": pairs,
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
