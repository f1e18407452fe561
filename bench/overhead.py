"""What trust features cost the inference hot path: ``inference.quota_on_vs_off`` and
``inference.monitoring_on_vs_off`` (rps ratios at c=32, targets >= 0.95).

For each feature, two inference processes serve the digits MLP from the same repository, one with the
feature on and one with it off; a separate load process drives each at c=32 in turn (rounds interleaved,
the order alternating), and the record is the median of the per-pair rps ratios on/off. On a shared
machine rps swings with whatever else runs, so each round also reads the server's CPU time (user +
system, all threads, /proc) over the round and divides it by the requests it answered:
``inference.<feature>_cpu_per_request_on_vs_off`` (on / off, lower is better, 1.0 = free) is the median of
the per-pair ratios and is the steadier figure under load. ``--simultaneous`` drives both servers at
once in each round instead (they share the cores, so the rps are lower, but whatever else loads the
machine then slows both alike; for measuring on a busy machine).

- quota: both require the same bearer token; "on" gives it a rate limit and a quota (far above the load,
  so every call is admitted but counted) and meters usage; "off" has the token without limits, no metering.
- monitoring: "on" samples requests into the drift window (default 1 in 8) and scores them against the
  repository's reference.json every 5 s; "off" has monitoring off. Neither uses auth.

By hand: ``python -m bench.overhead [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, Record, cpu_seconds, median, start_process
from bench.inference import METHOD, SERVER_ENV, request_bytes

TOKEN = "bench-token"
CONCURRENCY = 32


def _tokens(path: Path, limited: bool) -> Path:
    entry: dict[str, Any] = {"principal": "bench", "scopes": ["read:mlp"] if limited else ["read"]}
    if limited:
        entry.update({"rate_per_second": 1e6, "burst": 1e6, "quota": {"requests": 10**12, "per_seconds": 86400}})
    path.write_text(json.dumps({TOKEN: entry}))
    return path


def _feature_env(home: Path, feature: str, on: bool) -> dict[str, str]:
    label = f"{feature}-{'on' if on else 'off'}"
    if feature == "quota":
        return {
            "AIAAS_AUTH_TOKENS_FILE": str(_tokens(home / f"tokens-{label}.json", on)),
            "AIAAS_INFERENCE_USAGE_METERING": str(on).lower(),
            "AIAAS_INFERENCE_MONITORING": "false",
        }
    return {"AIAAS_INFERENCE_MONITORING": str(on).lower(), "AIAAS_INFERENCE_USAGE_METERING": "false"}


def _start(home: Path, repository: Path, feature: str, on: bool) -> tuple[subprocess.Popen[bytes], str]:
    label = f"{feature}-{'on' if on else 'off'}"
    port_file = home / f"{label}.port"
    env = {
        **SERVER_ENV,
        "AIAAS_HOME": str(home / label),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_INSTANCES": "2",
        "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
        "AIAAS_AUDIT_LOG": "false",
        **_feature_env(home, feature, on),
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file), "--http-port", "-1"]
    return start_process(args, env, port_file, home / f"{label}.log")


async def _load(
    target: str, payload: bytes, concurrency: int, seconds: float, warmup: float, token: bool
) -> dict[str, Any]:
    import grpc

    metadata = (("authorization", f"Bearer {TOKEN}"),) if token else ()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        done = answered = 0
        errors: dict[str, int] = {}
        begin = time.perf_counter() + warmup
        end = begin + seconds

        async def worker() -> None:
            nonlocal done, answered
            while (started := time.perf_counter()) < end:
                try:
                    await call(payload, timeout=30, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                answered += 1
                if started >= begin:
                    done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    # "answered" counts the warm-up too: the server's CPU is read over the whole round.
    return {"rps": done / seconds, "answered": answered + sum(errors.values()), "errors": errors}


def _run_load(target: str, request_file: Path, seconds: float, warmup: float, token: bool) -> dict[str, Any]:
    args = ["load", target, str(request_file), str(seconds), str(warmup), "token" if token else "none"]
    completed = subprocess.run(
        [sys.executable, "-m", "bench.overhead", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + warmup + 60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load process failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _round(process: subprocess.Popen[bytes], target: str, payload: Path, seconds: float, warmup: float,
           token: bool) -> dict[str, Any]:  # fmt: skip
    """One load round against one server: its rps and the server's CPU seconds per answered request."""
    before = cpu_seconds(process.pid)
    result = _run_load(target, payload, seconds, warmup, token)
    result["cpu_per_request"] = (cpu_seconds(process.pid) - before) / max(1, result["answered"])
    return result


def _pair(processes: dict[bool, subprocess.Popen[bytes]], targets: dict[bool, str], payload: Path, seconds: float,
          warmup: float, token: bool, first: bool, simultaneous: bool) -> dict[bool, dict[str, Any]]:  # fmt: skip
    """One round against each server: one after the other (``first`` first), or both at once."""
    order = (first, not first)
    if not simultaneous:
        return {on: _round(processes[on], targets[on], payload, seconds, warmup, token) for on in order}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = {on: pool.submit(_round, processes[on], targets[on], payload, seconds, warmup, token) for on in order}
        return {on: future.result() for on, future in futures.items()}


def _compare(
    home: Path, repository: Path, payload: Path, feature: str, quick: bool, simultaneous: bool = False
) -> list[Record]:
    seconds, warmup, pairs = (2.0, 0.5, 3) if quick else (4.0, 1.0, 9)
    processes: dict[bool, subprocess.Popen[bytes]] = {}
    try:
        targets = {}
        for on in (True, False):
            processes[on], targets[on] = _start(home, repository, feature, on)
        rounds: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        errors: dict[str, int] = {}
        for pair in range(pairs + 1):  # the first pair warms both servers up and is not counted
            results = _pair(
                processes, targets, payload, seconds, warmup, feature == "quota", pair % 2 == 1, simultaneous
            )
            for on, result in results.items():
                if pair:
                    rounds[on].append(result)
                for code, count in result["errors"].items():
                    errors[code] = errors.get(code, 0) + count
    finally:
        for process in processes.values():
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    measured_on, measured_off = rounds[True], rounds[False]
    ratios = [a["rps"] / b["rps"] for a, b in zip(measured_on, measured_off, strict=True)]
    cpu_ratios = [a["cpu_per_request"] / b["cpu_per_request"] for a, b in zip(measured_on, measured_off, strict=True)]
    params = {
        "model": "mlp",
        "concurrency": CONCURRENCY,
        "pairs": pairs,
        "rounds": "simultaneous" if simultaneous else "interleaved",
        "seconds": seconds,
        "rps_on": round(median([r["rps"] for r in measured_on]), 1),
        "rps_off": round(median([r["rps"] for r in measured_off]), 1),
        "ratios": [round(r, 3) for r in ratios],
        "cpu_us_per_request_on": round(median([r["cpu_per_request"] for r in measured_on]) * 1e6, 1),
        "cpu_us_per_request_off": round(median([r["cpu_per_request"] for r in measured_off]) * 1e6, 1),
        "cpu_ratios": [round(r, 3) for r in cpu_ratios],
        "errors": errors,
        "target": 0.95,
    }
    cpu_params = {k: v for k, v in params.items() if k not in ("ratios", "target")} | {"target": 1.05}
    return [
        Record(f"inference.{feature}_on_vs_off", median(ratios), "ratio", "higher", params),
        Record(f"inference.{feature}_cpu_per_request_on_vs_off", median(cpu_ratios), "ratio", "lower", cpu_params),
    ]


def run(quick: bool, simultaneous: bool = False) -> list[Record]:
    """Each feature's pair of servers in turn; one record each."""
    import numpy as np

    from aiaas_services.inference.examples import build_repository
    from aiaas_services.monitoring.drift import reference_stats

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", ("mlp",))
        rows = np.random.default_rng(1).standard_normal((2000, 64)).astype(np.float32)
        reference = reference_stats(rows, np.random.default_rng(2).integers(0, 10, 2000), 10)
        (repository / "mlp" / "1" / "reference.json").write_text(json.dumps(reference))
        payload = home / "mlp.bin"
        payload.write_bytes(request_bytes("mlp"))
        return [
            record
            for feature in ("quota", "monitoring")
            for record in _compare(home, repository, payload, feature, quick, simultaneous)
        ]


def main(argv: Sequence[str] | None = None) -> int:
    """``load TARGET REQUEST_FILE SECONDS WARMUP token|none`` (the load process), or the whole measurement."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["load"]:
        target, request_file, seconds, warmup, token = args[1:6]
        payload = Path(request_file).read_bytes()
        result = asyncio.run(_load(target, payload, CONCURRENCY, float(seconds), float(warmup), token == "token"))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(prog="bench.overhead")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--simultaneous",
        action="store_true",
        help="drive both servers at once in each round (a busy machine's noise then hits both alike)",
    )
    options = parser.parse_args(args)
    for record in run(options.quick, options.simultaneous):
        print(json.dumps(record.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
