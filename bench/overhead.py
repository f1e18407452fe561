"""What trust features cost the inference hot path: ``inference.quota_on_vs_off`` and
``inference.monitoring_on_vs_off`` (rps ratios at c=32, targets >= 0.95).

For each feature, two inference processes serve the digits MLP from the same repository, one with the
feature on and one with it off; a separate load process drives each at c=32 in turn (the order
alternating), and the record is the median of the per-pair rps ratios on/off.

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

from bench.common import ROOT, Record, median, start_process
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
        done = 0
        errors: dict[str, int] = {}
        begin = time.perf_counter() + warmup
        end = begin + seconds

        async def worker() -> None:
            nonlocal done
            while (started := time.perf_counter()) < end:
                try:
                    await call(payload, timeout=30, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                if started >= begin:
                    done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"rps": done / seconds, "errors": errors}


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


def _compare(home: Path, repository: Path, payload: Path, feature: str, quick: bool) -> Record:
    seconds, warmup, pairs = (2.0, 0.5, 3) if quick else (4.0, 1.0, 7)
    processes = []
    try:
        targets = {}
        for on in (True, False):
            process, targets[on] = _start(home, repository, feature, on)
            processes.append(process)
        rps: dict[bool, list[float]] = {True: [], False: []}
        errors: dict[str, int] = {}
        for pair in range(pairs):
            for on in (True, False) if pair % 2 else (False, True):
                result = _run_load(targets[on], payload, seconds, warmup, feature == "quota")
                rps[on].append(result["rps"])
                for code, count in result["errors"].items():
                    errors[code] = errors.get(code, 0) + count
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    ratios = [a / b for a, b in zip(rps[True], rps[False], strict=True)]
    params = {
        "model": "mlp",
        "concurrency": CONCURRENCY,
        "pairs": pairs,
        "seconds": seconds,
        "rps_on": round(median(rps[True]), 1),
        "rps_off": round(median(rps[False]), 1),
        "ratios": [round(r, 3) for r in ratios],
        "errors": errors,
        "target": 0.95,
    }
    return Record(f"inference.{feature}_on_vs_off", median(ratios), "ratio", "higher", params)


def run(quick: bool) -> list[Record]:
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
        return [_compare(home, repository, payload, feature, quick) for feature in ("quota", "monitoring")]


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
    for record in run(parser.parse_args(args).quick):
        print(json.dumps(record.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
