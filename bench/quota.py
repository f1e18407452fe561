"""What per-token limits and usage metering cost the inference hot path: ``inference.quota_on_vs_off``.

Two inference processes serve the digits MLP from the same repository, both requiring the same bearer
token. "on": the token carries a rate limit and a quota (both far above the load, so every call is
admitted but counted) and usage metering is on; "off": the same token without limits, metering off.
A separate load process drives each at c=32 in turn (the order alternating); the record is the median of
the per-pair rps ratios on/off (target >= 0.95). By hand: ``python -m bench.quota [--quick]``.
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


def _start(home: Path, repository: Path, on: bool) -> tuple[subprocess.Popen[bytes], str]:
    label = "on" if on else "off"
    port_file = home / f"quota-{label}.port"
    env = {
        **SERVER_ENV,
        "AIAAS_HOME": str(home / label),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_INSTANCES": "2",
        "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
        "AIAAS_AUTH_TOKENS_FILE": str(_tokens(home / f"tokens-{label}.json", on)),
        "AIAAS_INFERENCE_USAGE_METERING": str(on).lower(),
        "AIAAS_AUDIT_LOG": "false",
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file)]
    return start_process(args, env, port_file, home / f"quota-{label}.log")


async def _load(target: str, payload: bytes, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    import grpc

    metadata = (("authorization", f"Bearer {TOKEN}"),)
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


def _run_load(target: str, request_file: Path, seconds: float, warmup: float) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.quota", "load", target, str(request_file), str(seconds), str(warmup)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + warmup + 60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load process failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(quick: bool) -> list[Record]:
    """Both servers up, alternating loads; one record."""
    from aiaas_services.inference.examples import build_repository

    seconds, warmup, pairs = (2.0, 0.5, 3) if quick else (4.0, 1.0, 7)
    with tempfile.TemporaryDirectory(prefix="bench-quota-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", ("mlp",))
        payload = home / "mlp.bin"
        payload.write_bytes(request_bytes("mlp"))
        processes = []
        try:
            targets = {}
            for on in (True, False):
                process, targets[on] = _start(home, repository, on)
                processes.append(process)
            rps: dict[bool, list[float]] = {True: [], False: []}
            errors: dict[str, int] = {}
            for pair in range(pairs):
                for on in (True, False) if pair % 2 else (False, True):
                    result = _run_load(targets[on], payload, seconds, warmup)
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
    return [Record("inference.quota_on_vs_off", median(ratios), "ratio", "higher", params)]


def main(argv: Sequence[str] | None = None) -> int:
    """``load TARGET REQUEST_FILE SECONDS WARMUP`` (the load process), or the whole measurement."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["load"]:
        target, request_file, seconds, warmup = args[1:5]
        payload = Path(request_file).read_bytes()
        print(json.dumps(asyncio.run(_load(target, payload, CONCURRENCY, float(seconds), float(warmup)))))
        return 0
    parser = argparse.ArgumentParser(prog="bench.quota")
    parser.add_argument("--quick", action="store_true")
    for record in run(parser.parse_args(args).quick):
        print(json.dumps(record.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
