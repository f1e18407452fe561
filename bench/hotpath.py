"""What one request costs the server, and what that cost is made of: server CPU µs per request.

Wall-clock requests/s on this shared 2-core machine swings with the neighbours' load; the CPU time a
server process spends per request (user + system, all its threads, from /proc) does not, and for a
CPU-bound server rps ∝ 1 / CPU per request. Six servers run side by side as their own processes and one
load process drives each in turn (alternating order, median of rounds), at 1 and 32 requests in flight:

- ``grpc.bytes``: a bare ``grpc.aio`` server, one no-op RPC on raw bytes (the gRPC floor);
- ``runtime.off`` / ``runtime.on``: the same no-op RPC served by the shared runtime (``serve()``: every
  interceptor a service gets), tracing off / on (defaults: file export, parent-based always-on);
- ``echo``: bench/inference.py's bare echo server (ModelInfer parsed and answered, no model);
- ``mlp.off`` / ``mlp.defaults``: the inference service on the digits MLP with every default a user gets,
  tracing off / on.

Records: ``hotpath.server_cpu_us.<target>.c<N>`` (µs, lower is better), the ratio
``hotpath.cpu_vs_echo.mlp.c<N>.defaults`` (the CPU form of ``inference.rps_vs_echo``: echo ÷ defaults, so
higher is better and 1.0 is the floor), and the breakdown ``hotpath.cost_us.c<N>.<part>``: the gRPC floor,
the runtime's interceptors, a span, ModelInfer's protobuf in and out, the inference work (resolve, decode,
validate, queue, ONNX Runtime, encode, statistics, usage, drift sampling) and tracing in the inference
service — each a difference of two medians measured in the same run (so it can come out slightly negative
where a part costs next to nothing).

By hand: ``python -m bench.hotpath [--quick]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Record, median, start_process
from bench.inference import METHOD, request_bytes, start_echo
from bench.tracing import ECHO_METHOD, process_cpu_seconds, run_load

CONCURRENCY = (1, 32)
QUIET = {"AIAAS_LOG_LEVEL": "WARNING", "AIAAS_AUDIT_LOG": "false"}
OFF = {"OTEL_TRACES_EXPORTER": "none"}


def _runtime_echo(home: Path, label: str, env: dict[str, str], bare: bool = False) -> tuple[Any, str]:
    port_file = home / f"{label}.port"
    args = ["bench.tracing", "serve-echo", "--port-file", str(port_file), *(["--bare"] if bare else [])]
    work = home / label
    work.mkdir()
    return start_process(args, {"AIAAS_HOME": str(work), **QUIET, **env}, port_file, home / f"{label}.log")


def _inference(home: Path, repository: Path, label: str, env: dict[str, str]) -> tuple[Any, str]:
    port_file = home / f"{label}.port"
    env = {
        "AIAAS_HOME": str(home / label),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_LOG_LEVEL": "WARNING",
        **env,
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file), "--http-port", "0"]
    return start_process(args, env, port_file, home / f"{label}.log")


def measure(quick: bool) -> dict[tuple[str, int], list[float]]:
    """CPU µs per request of each target at each concurrency, one figure per round."""
    from aiaas_services.inference.examples import build_repository

    seconds, rounds = (1.0, 1) if quick else (3.0, 3)
    cpu: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", ("mlp",))
        payloads = {"bytes": b"x" * 64, "echo": request_bytes("echo"), "mlp": request_bytes("mlp")}
        starters = {
            "grpc.bytes": lambda: _runtime_echo(home, "grpc.bytes", OFF, bare=True),
            "runtime.off": lambda: _runtime_echo(home, "runtime.off", OFF),
            "runtime.on": lambda: _runtime_echo(home, "runtime.on", {}),
            "echo": lambda: start_echo(home),
            "mlp.off": lambda: _inference(home, repository, "mlp.off", OFF),
            "mlp.defaults": lambda: _inference(home, repository, "mlp.defaults", {}),
        }
        calls = {
            "grpc.bytes": (ECHO_METHOD, payloads["bytes"]),
            "runtime.off": (ECHO_METHOD, payloads["bytes"]),
            "runtime.on": (ECHO_METHOD, payloads["bytes"]),
            "echo": (METHOD, payloads["echo"]),
            "mlp.off": (METHOD, payloads["mlp"]),
            "mlp.defaults": (METHOD, payloads["mlp"]),
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        targets: dict[str, str] = {}
        try:
            for label, starter in starters.items():
                processes[label], targets[label] = starter()
            for index in range(rounds):
                order = list(starters) if index % 2 == 0 else list(reversed(starters))
                for concurrency in CONCURRENCY:
                    for label in order:
                        method, payload = calls[label]
                        before = process_cpu_seconds(processes[label].pid)
                        result = run_load(targets[label], method, payload, concurrency, seconds, timeout=30)
                        spent = process_cpu_seconds(processes[label].pid) - before
                        if result["errors"]:
                            raise RuntimeError(f"{label}: {result['errors']} failed requests")
                        requests = result["count"] + result["warmup"]
                        cpu.setdefault((label, concurrency), []).append(spent / requests * 1e6)
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
    return cpu


def records(cpu: dict[tuple[str, int], list[float]], quick: bool) -> list[Record]:
    """The per-target figures, the ratio to the echo server and the breakdown."""
    params = {"quick": quick, "what": "server process user+system CPU per request (/proc), median of rounds"}
    out: list[Record] = []
    med = {key: median(values) for key, values in cpu.items()}
    for (label, concurrency), values in sorted(cpu.items()):
        out.append(
            Record(
                f"hotpath.server_cpu_us.{label}.c{concurrency}",
                med[(label, concurrency)],
                "us",
                "lower",
                {**params, "each": [round(v, 1) for v in values]},
            )
        )
    for concurrency in CONCURRENCY:
        m = {label: med[(label, c)] for (label, c) in med if c == concurrency}
        out.append(
            Record(
                f"hotpath.cpu_vs_echo.mlp.c{concurrency}.defaults",
                m["echo"] / m["mlp.defaults"],
                "ratio",
                "higher",
                {**params, "echo_us": round(m["echo"], 1), "defaults_us": round(m["mlp.defaults"], 1)},
            )
        )
        interceptors = m["runtime.off"] - m["grpc.bytes"]
        parts = {
            "grpc_floor": m["grpc.bytes"],
            "runtime_interceptors": interceptors,
            "span": m["runtime.on"] - m["runtime.off"],
            "modelinfer_protobuf": m["echo"] - m["grpc.bytes"],
            "inference_work": m["mlp.off"] - m["echo"] - interceptors,
            "tracing_in_inference": m["mlp.defaults"] - m["mlp.off"],
        }
        for part, value in parts.items():
            out.append(Record(f"hotpath.cost_us.c{concurrency}.{part}", value, "us", "lower", params))
    return out


def run(quick: bool) -> list[Record]:
    """Entry point of the bench runner."""
    return records(measure(quick), quick)


def main() -> int:
    """Print the records as a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for record in run(args.quick):
        print(f"{record.name:<48} {record.value:10.1f} {record.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
