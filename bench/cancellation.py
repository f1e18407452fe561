"""What the inference service's cancellation and deadline checks cost: requests/s with them on ÷ off.

Two inference processes on the same model repository, one with ``AIAAS_INFERENCE_CANCEL_CHECKS=false``,
each loaded in turn by a load process (as in bench/inference.py) at 8 requests in flight; requests carry
the load's 30 s deadline, so the deadline bookkeeping is priced too.

The figure is CPU time per request of the server process (user + system, all threads, from /proc; the
requests counted by ModelStatistics), not wall-clock requests/s: on a machine shared with other work,
wall-clock throughput of two identical servers differs by ±50 % from second to second (measured here,
an A/A run), while CPU per request does not depend on who else runs. For a CPU-bound server, requests/s
on ÷ off is CPU per request off ÷ on. The raw requests/s are in the params. Record:
``inference.rps_cancel_checks_on_vs_off.<model>.c8`` (median of the rounds' ratios; target >= 0.97).
"""

from __future__ import annotations

import os
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
    args = ["aiaas_services.inference", "--port", "0", "--http-port", "-1", "--port-file", str(port_file)]
    return _start(args, env, port_file, home / f"{label}.log")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(target: str, model: str) -> int:
    """Requests (rows) the server has answered for ``model``."""
    import grpc

    from aiaas.oip.v2 import grpc_service_pb2 as pb
    from aiaas.oip.v2 import grpc_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=10).model_stats
    return sum(s.inference_count for s in stats)


def _round(process: subprocess.Popen[bytes], target: str, model: str, payload: Path, seconds: float) -> dict:
    cpu, served = _cpu_seconds(process.pid), _served(target, model)
    result = run_load(target, payload, CONCURRENCY, seconds, 0.3)
    if result["errors"]:
        raise RuntimeError(f"errors under load: {result['errors']}")
    requests = _served(target, model) - served
    return {"cpu_per_request": (_cpu_seconds(process.pid) - cpu) / max(1, requests), "rps": result["rps"]}


def run(quick: bool) -> list[Record]:
    """Alternating rounds per model (quick: 3 rounds of 1 s per side; full: 7 of 2 s)."""
    from aiaas_services.inference.examples import build_repository

    seconds, rounds = (1.0, 3) if quick else (2.0, 7)
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="bench-cancel-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", MODELS)
        started = {checks: _start_inference(home, repository, checks) for checks in (True, False)}
        try:
            for model in MODELS:
                payload = home / f"{model}.bin"
                payload.write_bytes(request_bytes(model))
                for checks in (True, False):  # warm both
                    run_load(started[checks][1], payload, CONCURRENCY, 0.5, 0.2)
                ratios: list[float] = []
                seen: dict[bool, list[dict]] = {True: [], False: []}
                for turn in range(rounds):
                    got = {}
                    for checks in (True, False) if turn % 2 == 0 else (False, True):
                        got[checks] = _round(*started[checks], model, payload, seconds)
                        seen[checks].append(got[checks])
                    ratios.append(got[False]["cpu_per_request"] / got[True]["cpu_per_request"])
                records.append(
                    Record(
                        f"inference.rps_cancel_checks_on_vs_off.{model}.c{CONCURRENCY}",
                        median(ratios),
                        "ratio",
                        "higher",
                        {
                            "what": "server CPU per request, checks off ÷ on (= req/s on ÷ off when CPU-bound)",
                            "rounds": rounds,
                            "seconds": seconds,
                            "cpu_us_per_request_on": round(median([r["cpu_per_request"] for r in seen[True]]) * 1e6, 1),
                            "cpu_us_per_request_off": round(
                                median([r["cpu_per_request"] for r in seen[False]]) * 1e6, 1
                            ),
                            "rps_on": round(median([r["rps"] for r in seen[True]]), 1),
                            "rps_off": round(median([r["rps"] for r in seen[False]]), 1),
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
