"""Tracing cost on the hot path: requests/s with tracing on (100% sampling, file exporter) ÷ tracing off.

Two copies of a server run side by side as their own processes, one with ``OTEL_TRACES_EXPORTER=file``
and ``OTEL_TRACES_SAMPLER=always_on``, one with ``OTEL_TRACES_EXPORTER=none``; a separate load process
drives each in turn (alternating rounds, median of rounds) with the same pre-serialized request at a
fixed number of in-flight requests.

Records:
- ``tracing.throughput_on_vs_off.<model>.c8`` for ``mlp`` and ``transformer``: the inference service
  (ModelInfer, bench/inference.py's models and requests) — the issue's target is >= 0.90. Its params also
  carry the servers' CPU time per request on and off, which the neighbours' load disturbs far less.
- ``tracing.throughput_on_vs_off.mlp.c32``: the same at 32 in flight (the issue's target there is >= 0.95).
- ``tracing.span_cpu_sdk_over_light``: CPU per span on the request's thread, the SDK's span ÷ our light one,
  both exported through the SDK's ``BatchSpanProcessor`` (why the file exporter keeps light spans).
- ``tracing.interceptor_overhead.echo.c8``: a no-op RPC through the shared runtime (``serve()``), the
  worst case: nothing but gRPC and our interceptors, so any tracing cost shows in full.

Also runnable by hand: ``python -m bench.tracing serve-echo --port-file F`` and
``python -m bench.tracing load --target HOST:PORT --method /pkg.Svc/Method --request-file F``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.common import ROOT, Record, median, start_process

ECHO_METHOD = "/bench.Echo/Unary"
TRACING_ON = {"OTEL_TRACES_EXPORTER": "file", "OTEL_TRACES_SAMPLER": "always_on"}
# The audit log (a file append per write RPC; the echo counts as one) would dwarf what we measure.
ECHO_ENV = {"AIAAS_AUDIT_LOG": "false"}
TRACING_OFF = {"OTEL_TRACES_EXPORTER": "none"}


# --- the processes ----------------------------------------------------------------------------------------


def _identity(data: bytes) -> bytes:
    return data


class EchoApp:
    """A service with one no-op unary RPC, served through the same runtime as every real service."""

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add ``/bench.Echo/Unary``."""

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        handler = grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=_identity, response_serializer=_identity
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Unary": handler}),))
        return []

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""


def serve_echo(port_file: str, bare: bool = False) -> None:
    """Run the echo app with the runtime's ``serve()`` (tracing set up from OTEL_* like any service), or with
    ``bare`` on a plain ``grpc.aio`` server (no interceptor, no health: the gRPC floor of a no-op RPC)."""
    if bare:
        asyncio.run(_serve_bare(port_file))
        return
    from aiaas_services.runtime.server import serve
    from aiaas_services.runtime.settings import ServiceSettings

    class EchoSettings(ServiceSettings):
        service_name = "bench-echo"

    settings = EchoSettings(port=0, port_file=port_file, home=os.environ.get("AIAAS_HOME", tempfile.gettempdir()))
    asyncio.run(serve(settings, EchoApp()))  # type: ignore[arg-type]


async def _serve_bare(port_file: str) -> None:
    server = grpc.aio.server()
    EchoApp().register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(port_file).write_text(str(port))
    await server.wait_for_termination()


async def _load(
    target: str, method: str, payload: bytes, concurrency: int, seconds: float, timeout: float | None = None
) -> dict[str, Any]:
    """Keep ``concurrency`` calls in flight for ``seconds``; count completions and errors (``timeout``: each
    call's deadline, as ``grpc`` clients such as ghz send one; None sends none)."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)
        warmup = 20
        for _ in range(warmup):  # warm the connection and the server's first-call paths
            await call(payload, timeout=timeout)
        done = errors = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                try:
                    await call(payload, timeout=timeout)
                    done += 1
                except grpc.aio.AioRpcError:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"count": done, "errors": errors, "seconds": elapsed, "rps": done / elapsed, "warmup": warmup}


def run_load(
    target: str, method: str, payload: bytes, concurrency: int, seconds: float, timeout: float | None = None
) -> dict[str, Any]:
    """One load round in a separate process (so the load does not share the bench's interpreter)."""
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as handle:
        handle.write(payload)
    try:
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.tracing",
                "load",
                "--target",
                target,
                "--method",
                method,
                "--request-file",
                handle.name,
                "--concurrency",
                str(concurrency),
                "--seconds",
                str(seconds),
                *(["--timeout", str(timeout)] if timeout is not None else []),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(handle.name)
    return dict(json.loads(output.strip().splitlines()[-1]))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare_on_off(
    targets: dict[str, str],
    method: str,
    payload: bytes,
    concurrency: int,
    seconds: float,
    rounds: int,
    pids: dict[str, int] | None = None,
) -> tuple[float, dict[str, Any]]:
    """Alternate load rounds between the tracing-on and tracing-off targets; ratio of median rps.

    With ``pids``, also the servers' CPU time per request: on a shared, busy machine throughput swings
    with the neighbours' load, while CPU per request is what tracing actually costs the server.
    """
    rps: dict[str, list[float]] = {"on": [], "off": []}
    cpu_us: dict[str, list[float]] = {"on": [], "off": []}
    for index in range(rounds):
        order = ("on", "off") if index % 2 == 0 else ("off", "on")
        for mode in order:
            cpu_before = process_cpu_seconds(pids[mode]) if pids else 0.0
            result = run_load(targets[mode], method, payload, concurrency, seconds)
            if result["errors"]:
                raise RuntimeError(f"{mode}: {result['errors']} failed requests during the load round")
            rps[mode].append(result["rps"])
            if pids:
                requests = result["count"] + result.get("warmup", 0)
                cpu_us[mode].append((process_cpu_seconds(pids[mode]) - cpu_before) / requests * 1e6)
    ratio = median(rps["on"]) / median(rps["off"])
    params: dict[str, Any] = {
        "rps_on": [round(v, 1) for v in rps["on"]],
        "rps_off": [round(v, 1) for v in rps["off"]],
        "median_rps_on": round(median(rps["on"]), 1),
        "median_rps_off": round(median(rps["off"]), 1),
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "sampler": "always_on",
        "exporter": "file",
    }
    if pids:
        params["server_cpu_us_per_request_on"] = [round(v, 1) for v in cpu_us["on"]]
        params["server_cpu_us_per_request_off"] = [round(v, 1) for v in cpu_us["off"]]
        params["server_cpu_per_request_off_over_on"] = round(median(cpu_us["off"]) / median(cpu_us["on"]), 4)
    return ratio, params


# --- the suites -------------------------------------------------------------------------------------------


def _start_echo(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port_file = home / "echo.port"
    args = ["bench.tracing", "serve-echo", "--port-file", str(port_file)]
    return start_process(args, {"AIAAS_HOME": str(home), **env}, port_file, home / "echo.log", timeout=60)


def echo_overhead(quick: bool) -> Record:
    """``tracing.interceptor_overhead.echo.c8``."""
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        processes = {}
        targets = {}
        try:
            for mode, env in (("on", TRACING_ON), ("off", TRACING_OFF)):
                home = Path(tmp) / mode
                home.mkdir()
                processes[mode], targets[mode] = _start_echo(home, {**ECHO_ENV, **env})
            ratio, params = compare_on_off(
                targets,
                ECHO_METHOD,
                b"x" * 64,
                8,
                seconds=1.0 if quick else 5.0,
                rounds=3 if quick else 5,
                pids={mode: process.pid for mode, process in processes.items()},
            )
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(30)
        spans = sum(1 for _ in (Path(tmp) / "on" / "traces").glob("*.jsonl"))
        params["span_files_written"] = spans
    return Record("tracing.interceptor_overhead.echo.c8", ratio, "ratio", "higher", params)


def _start_inference(home: Path, repository: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m aiaas_services.inference`` on a free port serving the local repository, configured as in
    bench/inference.py (2 instances of 1 thread, batching on) plus the tracing variables in ``env``."""
    port_file = home / "inference.port"
    settings_env = {
        "AIAAS_HOME": str(home),
        "AIAAS_LOG_LEVEL": "WARNING",
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_INSTANCES": "2",
        "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file), "--http-port", "-1"]
    return start_process(args, {**settings_env, **env}, port_file, home / "inference.log")


def inference_on_vs_off(quick: bool, models: Sequence[str] = ("mlp", "transformer")) -> list[Record]:
    """``tracing.throughput_on_vs_off.<model>.c8``: the inference service, tracing at 100% vs off.

    The models and requests are bench/inference.py's (``build_repository``, ``request_bytes``), so the
    figures sit beside ``inference.rps.<model>.c8.batching_on``.
    """
    from aiaas_services.inference.examples import build_repository
    from bench.inference import request_bytes

    records = []
    with tempfile.TemporaryDirectory(prefix="bench-tracing-inference-") as tmp:
        repository = build_repository(Path(tmp) / "models", tuple(models))
        processes: dict[str, subprocess.Popen[bytes]] = {}
        targets: dict[str, str] = {}
        try:
            for mode, env in (("on", TRACING_ON), ("off", TRACING_OFF)):
                home = Path(tmp) / mode
                home.mkdir()
                processes[mode], targets[mode] = _start_inference(home, repository, env)
            for model in models:
                for concurrency in (8, 32) if model == "mlp" else (8,):
                    ratio, params = compare_on_off(
                        targets,
                        "/inference.GRPCInferenceService/ModelInfer",
                        request_bytes(model),
                        concurrency,
                        seconds=1.0 if quick else 5.0,
                        rounds=3 if quick else 7,
                        pids={mode: process.pid for mode, process in processes.items()},
                    )
                    params["model"] = f"{model} from aiaas_services.inference.examples, fp32, batch-1 requests"
                    name = f"tracing.throughput_on_vs_off.{model}.c{concurrency}"
                    records.append(Record(name, ratio, "ratio", "higher", params))
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(60)
        traces = Path(tmp) / "on" / "traces" / "inference.jsonl"
        names: dict[str, int] = {}
        if traces.exists():
            for line in traces.read_text().splitlines():
                name = json.loads(line)["name"]
                names[name] = names.get(name, 0) + 1
        for record in records:
            record.params["spans_written_by_name_all_models"] = names
    return records


def _span_cpu_us(provider: Any, spans: int) -> float:
    """CPU microseconds this thread spends per SERVER-like span (start with attributes, 5 more, end)."""
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("bench")
    attributes = {"rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService", "rpc.method": "ModelInfer"}
    extra = {"inference.model": "mlp:1", "inference.batch_requests": 8, "inference.batch_rows": 8}
    started = time.thread_time()
    for _ in range(spans):
        span = tracer.start_span(
            "inference.GRPCInferenceService/ModelInfer", kind=SpanKind.SERVER, attributes=attributes
        )
        span.set_attributes({**extra, "inference.queue_wait_ms": 0.1, "inference.run_ms": 0.05})
        span.set_attribute("rpc.grpc.status_code", 0)
        span.end()
    return (time.thread_time() - started) / spans * 1e6


def span_cost(quick: bool) -> Record:
    """``tracing.span_cpu_sdk_over_light``: CPU a span costs the request's thread, the SDK's span ÷ ours.

    Both export to the same JSON-lines file through the SDK's ``BatchSpanProcessor`` (its thread's CPU is not
    counted: only what the request's path pays). The reason the file exporter keeps its light spans.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    from aiaas_services.runtime.settings import ServiceSettings
    from aiaas_services.runtime.tracing import JsonLinesSpanExporter, JsonLinesTracerProvider, service_resource

    spans, rounds = (2000, 3) if quick else (20000, 5)
    resource = service_resource(ServiceSettings())
    figures: dict[str, list[float]] = {"sdk": [], "light": []}
    with tempfile.TemporaryDirectory(prefix="bench-span-cost-") as tmp:
        for index in range(rounds):
            for kind in ("sdk", "light") if index % 2 == 0 else ("light", "sdk"):
                path = Path(tmp) / f"{kind}-{index}.jsonl"
                provider: Any
                if kind == "sdk":
                    provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
                    provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(path), max_queue_size=65536))
                else:
                    provider = JsonLinesTracerProvider(resource, ParentBased(ALWAYS_ON), path, max_queue=65536)
                figures[kind].append(_span_cpu_us(provider, spans))
                provider.shutdown()
    sdk, light = median(figures["sdk"]), median(figures["light"])
    params = {
        "sdk_us_per_span": round(sdk, 2),
        "light_us_per_span": round(light, 2),
        "sdk_each": [round(v, 2) for v in figures["sdk"]],
        "light_each": [round(v, 2) for v in figures["light"]],
        "spans_per_round": spans,
        "what": "start SERVER span with 3 attributes, set 6 more, end; calling thread's CPU only",
    }
    return Record("tracing.span_cpu_sdk_over_light", sdk / light, "ratio", "higher", params)


def run(quick: bool) -> list[Record]:
    """Entry point of the bench runner."""
    return [*inference_on_vs_off(quick), echo_overhead(quick), span_cost(quick)]


def main(argv: Sequence[str] | None = None) -> int:
    """``serve-echo`` and ``load`` sub-commands used by the suite's child processes."""
    parser = argparse.ArgumentParser(prog="python -m bench.tracing")
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("serve-echo")
    echo.add_argument("--port-file", required=True)
    echo.add_argument("--bare", action="store_true", help="plain grpc.aio server, no runtime")
    load = commands.add_parser("load")
    load.add_argument("--target", required=True)
    load.add_argument("--method", required=True)
    load.add_argument("--request-file", required=True)
    load.add_argument("--concurrency", type=int, default=8)
    load.add_argument("--seconds", type=float, default=5.0)
    load.add_argument("--timeout", type=float, default=None, help="each call's deadline in seconds")
    args = parser.parse_args(argv)
    if args.command == "serve-echo":
        serve_echo(args.port_file, args.bare)
        return 0
    payload = Path(args.request_file).read_bytes()
    result = asyncio.run(_load(args.target, args.method, payload, args.concurrency, args.seconds, args.timeout))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
