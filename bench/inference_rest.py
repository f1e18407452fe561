"""REST (KServe V2 HTTP) against gRPC on the same inference server, same model, same run.

One inference process serves both ports. For each model and concurrency (1, 8, 32) the gRPC load, the
REST load with JSON tensors and the REST load with binary tensors run back to back in alternating
rounds, each in its own client process as lean as the gRPC one (pre-built request bytes, keep-alive
HTTP/1.1 over asyncio streams, no JSON parsing of the answer). Records:
``inference.rest_vs_grpc.<model>.c<N>.<json|binary>`` (REST rps / gRPC rps, median of per-round ratios)
and ``inference.rest_p50_ms.<model>.c1.<json|binary>`` (the gRPC p50 of the same rounds in its params). Both
doors do the same per-request work besides their codecs (validation, batcher, usage metering, drift
sampling). Throughput on a shared 2-core machine swings
with the neighbours' load, so each point also records the server's CPU time per request (utime+stime of
the server process from /proc over the run, warm-up included, divided by the requests answered):
``inference.rest_vs_grpc_cpu.<model>.c<N>.<json|binary>`` = gRPC CPU per request / REST CPU per request
(> 1: REST is cheaper), which the neighbours disturb far less.

By hand: ``python -m bench.inference_rest load --url 127.0.0.1:PORT --path /v2/models/mlp/infer
--request-file F [--header-length N] --concurrency 8 --seconds 3``.
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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, Record, median, percentile, start_process
from bench.inference import CONCURRENCY, SERVER_ENV, request_bytes, run_load

MODELS = ("mlp", "transformer")


def rest_body(model: str, binary: bool, rows: int = 1) -> tuple[bytes, int | None]:
    """The same input as ``request_bytes`` (seeded), as a JSON or binary-extension infer body."""
    x = np.random.default_rng(1).standard_normal((rows, 64)).astype(np.float32)
    tensor: dict[str, Any] = {"name": "input", "shape": [rows, 64], "datatype": "FP32"}
    if not binary:
        tensor["data"] = x.reshape(-1).tolist()
        return json.dumps({"inputs": [tensor]}).encode(), None
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = json.dumps(
        {"inputs": [tensor], "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}
    ).encode()
    return header + x.tobytes(), len(header)


def _request(address: str, path: str, body: bytes, header_length: int | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {address}",
        "Content-Type: application/octet-stream" if header_length is not None else "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if header_length is not None:
        lines.append(f"Inference-Header-Content-Length: {header_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one_connection(host: str, port: int, request: bytes, end: float, begin: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= end:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if status != 200:
                out["errors"][str(status)] = out["errors"].get(str(status), 0) + 1
                continue
            if started >= begin:
                out["latencies"].append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(address: str, request: bytes, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    host, _, port = address.rpartition(":")
    out: dict[str, Any] = {"latencies": [], "errors": {}}
    begin = time.perf_counter() + warmup
    end = begin + seconds
    await asyncio.gather(*(_one_connection(host, int(port), request, end, begin, out) for _ in range(concurrency)))
    latencies = out["latencies"]
    return {
        "count": len(latencies),
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "errors": out["errors"],
    }


def run_rest_load(
    address: str,
    path: str,
    request_file: Path,
    header_length: int | None,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """One REST load run in a separate process; its JSON summary."""
    args = [sys.executable, "-m", "bench.inference_rest", "load", "--url", address, "--path", path]
    args += ["--request-file", str(request_file), "--concurrency", str(concurrency)]
    args += ["--seconds", str(seconds), "--warmup", str(warmup)]
    if header_length is not None:
        args += ["--header-length", str(header_length)]
    completed = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=seconds + warmup + 60)
    if completed.returncode != 0:
        raise RuntimeError(f"REST load process failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(pid: int, seconds: float, warmup: float, load: Any) -> tuple[dict[str, Any], float]:
    """Run ``load()`` and return its result and the server's CPU seconds per answered request."""
    before = cpu_seconds(pid)
    result = load()
    spent = cpu_seconds(pid) - before
    answered = result["count"] * (seconds + warmup) / seconds  # the rate held through the warm-up too
    return result, spent / max(answered, 1.0)


def _start_server(home: Path, repository: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port_file = home / "inference-rest.port"
    env = {
        "AIAAS_HOME": str(home / "rest"),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_INSTANCES": "2",
        "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file), "--http-port", "0"]
    process, grpc_target = start_process(args, {**SERVER_ENV, **env}, port_file, home / "inference-rest.log")
    http_file = Path(f"{port_file}.http")
    deadline = time.monotonic() + 30
    while not http_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, grpc_target, f"127.0.0.1:{int(http_file.read_text())}"


def run(quick: bool) -> list[Record]:
    """gRPC, REST JSON and REST binary in alternating rounds (quick: 1 round of 1 s; full: 5 of 2 s)."""
    from aiaas_services.inference.examples import build_repository

    seconds, warmup, rounds = (1.0, 0.3, 1) if quick else (2.0, 0.5, 5)
    ratios: dict[tuple[str, int, str], list[float]] = {}
    rest_p50: dict[tuple[str, str], list[float]] = {}
    grpc_p50: dict[str, list[float]] = {}
    cpu_ratios: dict[tuple[str, int, str], list[float]] = {}
    errors: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", MODELS)
        files: dict[tuple[str, str], tuple[Path, int | None]] = {}
        for model in MODELS:
            grpc_file = home / f"{model}.grpc.bin"
            grpc_file.write_bytes(request_bytes(model))
            files[(model, "grpc")] = (grpc_file, None)
            for kind in ("json", "binary"):
                body, length = rest_body(model, kind == "binary")
                path = home / f"{model}.{kind}.http"
                path.write_bytes(body)
                files[(model, kind)] = (path, length)
        process, grpc_target, http_address = _start_server(home, repository)
        try:
            for _ in range(rounds):
                for model in MODELS:
                    for concurrency in CONCURRENCY:
                        grpc_load = partial(run_load, grpc_target, files[(model, "grpc")][0], concurrency)
                        grpc_result, grpc_cpu = _measured(
                            process.pid, seconds, warmup, partial(grpc_load, seconds, warmup)
                        )
                        if concurrency == 1:
                            grpc_p50.setdefault(model, []).append(grpc_result["p50_ms"])
                        for kind in ("json", "binary"):
                            path, length = files[(model, kind)]
                            rest_load = partial(run_rest_load, http_address, f"/v2/models/{model}/infer", path, length)
                            result, rest_cpu = _measured(
                                process.pid, seconds, warmup, partial(rest_load, concurrency, seconds, warmup)
                            )
                            for code, count in {**grpc_result["errors"], **result["errors"]}.items():
                                errors[code] = errors.get(code, 0) + count
                            ratios.setdefault((model, concurrency, kind), []).append(
                                result["rps"] / max(grpc_result["rps"], 1e-9)
                            )
                            cpu_ratios.setdefault((model, concurrency, kind), []).append(grpc_cpu / max(rest_cpu, 1e-9))
                            if concurrency == 1:
                                rest_p50.setdefault((model, kind), []).append(result["p50_ms"])
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    common = {"quick": quick, "seconds_per_round": seconds, "rounds": rounds, "tracing": "off", "errors": errors}
    records = []
    for (model, concurrency, kind), values in sorted(ratios.items()):
        params = {**common, "concurrency": concurrency, "per_round": values}
        if model == "mlp" and concurrency == 32:
            params["target"] = ">= 0.85" if kind == "json" else ">= 0.95"
        records.append(
            Record(f"inference.rest_vs_grpc.{model}.c{concurrency}.{kind}", median(values), "ratio", "higher", params)
        )
    for (model, concurrency, kind), values in sorted(cpu_ratios.items()):
        name = f"inference.rest_vs_grpc_cpu.{model}.c{concurrency}.{kind}"
        params = {**common, "concurrency": concurrency, "per_round": values}
        records.append(Record(name, median(values), "ratio", "higher", params))
    for (model, kind), values in sorted(rest_p50.items()):
        params = {**common, "per_round": values, "grpc_p50_ms_same_rounds": median(grpc_p50.get(model, [0.0]))}
        records.append(Record(f"inference.rest_p50_ms.{model}.c1.{kind}", median(values), "ms", "lower", params))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """The ``load`` sub-command (the client process the suite starts)."""
    parser = argparse.ArgumentParser(prog="bench.inference_rest")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load")
    load.add_argument("--url", required=True, help="host:port of the REST front door")
    load.add_argument("--path", required=True)
    load.add_argument("--request-file", required=True)
    load.add_argument("--header-length", type=int, default=None)
    load.add_argument("--concurrency", type=int, default=8)
    load.add_argument("--seconds", type=float, default=3.0)
    load.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args(argv)
    request = _request(args.url, args.path, Path(args.request_file).read_bytes(), args.header_length)
    result = asyncio.run(_load(args.url, request, args.concurrency, args.seconds, args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
