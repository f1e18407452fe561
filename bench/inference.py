"""Inference service: requests/s and latency at 1, 8 and 32 in-flight requests, MLP and transformer,
batching off and on, beside a bare grpc.aio echo server on the same protocol and in-process ONNX Runtime.

Every server is its own process; the load is one separate process (grpc.aio, pre-serialized request,
raw bytes in and out so the client spends as little CPU as it can on this 2-core machine). Points run
in alternating rounds and each figure is the median of the rounds. Tracing is off in the batching on/off
servers (``OTEL_TRACES_EXPORTER=none``): its cost is ``tracing.throughput_on_vs_off``. A third server runs
with the settings a user gets by default (tracing on, file export, every inference default):
``inference.rps_vs_echo.<model>.c<N>.defaults`` and ``inference.latency_vs_echo.<model>.c1.defaults``.

When ``ghz`` is present (``../shared/tools/ghz``), it drives the echo server and the defaults server at
c=50 as well, beside the Python load generator at the same concurrency: ``inference.ghz.rps|p99_ms.<target>.c50``
and ``inference.pyload.rps|p99_ms.<target>.c50`` (targets ``echo``, ``mlp.defaults``).

Records (see /work/shared/BENCH.md): ``inference.rps|p50_ms|p99_ms.<model>.c<N>.batching_<on|off>``,
``inference.served_vs_raw_ort.<model>.c<N>.batching_<on|off>``, ``inference.latency_vs_echo.<model>.c1``,
``inference.batching_gain.<model>.c32``, ``inference.rest_vs_grpc.<model>.c<N>.<json|binary>`` and
``inference.rest_p50_ms.<model>.c1.<json|binary>`` (bench/inference_rest.py), plus
``inference.rps_vs_echo.<model>.c<N>.batching_<on|off>``,
``inference.batching_on_vs_off.<model>.c1`` and the echo server's own ``inference.rps|p50_ms.echo.c<N>``.
A plot of p50 latency against concurrency goes to bench/results/inference_latency.png.

By hand: ``python -m bench.inference echo --port-file F`` and
``python -m bench.inference load --target HOST:PORT --request-file F --concurrency 8 --seconds 3``.
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

import numpy as np

from bench.common import ROOT, Record, median, percentile, start_process

RESULTS = Path(__file__).parent / "results"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
MODELS = ("mlp", "transformer")
CONCURRENCY = (1, 8, 32)
SERVER_ENV = {"OTEL_TRACES_EXPORTER": "none", "AIAAS_LOG_LEVEL": "WARNING"}


# ---- processes ------------------------------------------------------------------------------------------


def serve_echo(port_file: str) -> None:
    """A bare grpc.aio server: ModelInfer parses the request and answers its inputs back as outputs."""
    import grpc

    from aiaas.oip.v2 import grpc_service_pb2 as pb
    from aiaas.oip.v2 import grpc_service_pb2_grpc

    class Echo(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request: Any, context: Any) -> Any:
            response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            for tensor in request.inputs:
                response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.extend(request.raw_input_contents)
            return response

    async def main() -> None:
        from aiaas_services.runtime.reflection import enable_reflection

        server = grpc.aio.server()
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
        # For ghz only (it finds the method through reflection); not on ModelInfer's path.
        enable_reflection(server, [pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        Path(port_file).write_text(str(port))
        await server.wait_for_termination()

    asyncio.run(main())


async def _load(target: str, payload: bytes, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out: no client-side (de)serialization
        latencies: list[float] = []
        errors: dict[str, int] = {}
        begin = time.perf_counter() + warmup
        end = begin + seconds

        async def worker() -> None:
            while True:
                started = time.perf_counter()
                if started >= end:
                    return
                try:
                    await call(payload, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                if started >= begin:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "count": len(latencies),
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "errors": errors,
    }


def run_load(target: str, request_file: Path, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    """One load run in a separate process; its JSON summary."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.inference",
            "load",
            "--target",
            target,
            "--request-file",
            str(request_file),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + warmup + 60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load process failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _start(args: list[str], env: dict[str, str], port_file: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_process(args, {**SERVER_ENV, **env}, port_file, log)


def start_inference(home: Path, repository: Path, batching: bool) -> tuple[subprocess.Popen[bytes], str]:
    """The inference service on the repository, batching on or off, 2 instances of 1 thread each."""
    label = "on" if batching else "off"
    port_file = home / f"inference-{label}.port"
    env = {
        "AIAAS_HOME": str(home / label),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_BATCHING": str(batching).lower(),
        "AIAAS_INFERENCE_INSTANCES": "2",
        "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
    }
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file), "--http-port", "-1"]
    return _start(args, env, port_file, home / f"inference-{label}.log")


def start_defaults(home: Path, repository: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The inference service with every default a user gets (tracing on, file export, 2 instances...)."""
    port_file = home / "inference-defaults.port"
    env = {
        "AIAAS_HOME": str(home / "defaults"),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_LOG_LEVEL": "WARNING",
    }
    # The REST door is on by default too; on a free port rather than 8000, so runs cannot collide.
    args = ["aiaas_services.inference", "--port", "0", "--port-file", str(port_file), "--http-port", "0"]
    return start_process(args, env, port_file, home / "inference-defaults.log")


def start_echo(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The bare echo server."""
    port_file = home / "echo.port"
    return _start(["bench.inference", "echo", "--port-file", str(port_file)], {}, port_file, home / "echo.log")


# ---- ghz -------------------------------------------------------------------------------------------------

GHZ = ROOT.parent / "shared" / "tools" / "ghz"
GHZ_CONCURRENCY = 50


def run_ghz(target: str, payload: Path, concurrency: int, count: int) -> dict[str, Any]:
    """One count-based ghz run (``-n``: no closed-connection noise at the end); rps, p50, p99, errors."""
    completed = subprocess.run(
        [
            str(GHZ),
            "--insecure",
            "--call",
            "inference.GRPCInferenceService.ModelInfer",
            "-B",
            str(payload),
            "-c",
            str(concurrency),
            "-n",
            str(count),
            "--format",
            "json",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if not completed.stdout.strip():
        raise RuntimeError(f"ghz failed: {completed.stderr[-2000:]}")
    report = json.loads(completed.stdout)
    percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    codes = {k: v for k, v in (report.get("statusCodeDistribution") or {}).items() if k != "OK"}
    return {"rps": report["rps"], "p50_ms": percentiles.get(50), "p99_ms": percentiles.get(99), "errors": codes}


def ghz_records(targets: dict[str, str], payloads: dict[str, Path], quick: bool) -> list[Record]:
    """ghz and the Python load generator side by side at c=50: the echo server and mlp with the defaults."""
    if not GHZ.exists():
        print(f"[bench] inference: ghz not found at {GHZ}; ghz records skipped", file=sys.stderr)
        return []
    count, rounds = (2000, 1) if quick else (8000, 3)
    seconds = 1.0 if quick else 4.0
    points = {"echo": (targets["echo"], payloads["echo"]), "mlp.defaults": (targets["defaults"], payloads["mlp"])}
    ghz_runs: dict[str, list[dict[str, Any]]] = {}
    py_runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for name, (target, payload) in points.items():
            ghz_runs.setdefault(name, []).append(run_ghz(target, payload, GHZ_CONCURRENCY, count))
            py_runs.setdefault(name, []).append(run_load(target, payload, GHZ_CONCURRENCY, seconds, 0.5))
    records: list[Record] = []
    for name in points:
        for tool, runs in (("ghz", ghz_runs[name]), ("pyload", py_runs[name])):
            params = {
                "quick": quick,
                "rounds": rounds,
                "concurrency": GHZ_CONCURRENCY,
                "load": f"ghz -n {count}" if tool == "ghz" else f"bench.inference load, {seconds}s",
                "rps_each": [round(r["rps"], 1) for r in runs],
                "errors": [r["errors"] for r in runs if r["errors"]],
            }
            figures = _median_of(runs)
            records.append(
                Record(f"inference.{tool}.rps.{name}.c{GHZ_CONCURRENCY}", figures["rps"], "req/s", "higher", params)
            )
            records.append(
                Record(f"inference.{tool}.p99_ms.{name}.c{GHZ_CONCURRENCY}", figures["p99_ms"], "ms", "lower", params)
            )
        echo_rps = median([r["rps"] for r in ghz_runs["echo"]])
    records.append(
        Record(
            f"inference.ghz.rps_vs_echo.mlp.c{GHZ_CONCURRENCY}.defaults",
            median([r["rps"] for r in ghz_runs["mlp.defaults"]]) / echo_rps,
            "ratio",
            "higher",
            {"quick": quick, "rounds": rounds, "load": f"ghz -n {count}"},
        )
    )
    return records


# ---- in-process ONNX Runtime ----------------------------------------------------------------------------


def raw_ort_throughput(path: Path, seconds: float) -> tuple[float, dict[str, Any]]:
    """Best inferences/s of ONNX Runtime in this process over batch sizes 1-32 and 1-2 threads."""
    import onnxruntime as ort

    best, best_params = 0.0, {}
    rng = np.random.default_rng(0)
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for batch in (1, 8, 32):
            x = rng.standard_normal((batch, 64)).astype(np.float32)
            session.run(None, {"input": x})
            runs = 0
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                session.run(None, {"input": x})
                runs += 1
            rate = runs * batch / elapsed
            if rate > best:
                best, best_params = rate, {"batch": batch, "intra_op_threads": threads}
    return best, best_params


def request_bytes(model: str, rows: int = 1) -> bytes:
    """A serialized ModelInferRequest for ``model`` with ``rows`` random digits-shaped rows."""
    from aiaas.oip.v2 import grpc_service_pb2 as pb

    x = np.random.default_rng(1).standard_normal((rows, 64)).astype(np.float32)
    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[rows, 64])],
        raw_input_contents=[x.tobytes()],
    )
    return request.SerializeToString()


# ---- the suite ------------------------------------------------------------------------------------------


def _plot(points: dict[str, dict[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, by_c in sorted(points.items()):
        xs = sorted(by_c)
        axis.plot(xs, [by_c[c] for c in xs], marker="o", label=label)
    axis.set_xscale("log", base=2)
    axis.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
    axis.set_xlabel("requests in flight")
    axis.set_ylabel("p50 latency (ms)")
    axis.set_title("inference latency vs concurrency (median of rounds)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(quick: bool) -> list[Record]:
    """The whole suite (quick: 1 round of ~1 s per point; full: 3 rounds of 4 s)."""
    from aiaas_services.inference.examples import build_repository

    seconds, warmup, rounds = (1.0, 0.3, 1) if quick else (4.0, 1.0, 3)
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", MODELS)
        raw = {m: raw_ort_throughput(repository / m / "1" / "model.onnx", 0.3 if quick else 1.0) for m in MODELS}
        payloads = {name: home / f"{name}.bin" for name in (*MODELS, "echo")}
        for name, path in payloads.items():
            path.write_bytes(request_bytes(name))
        processes = []
        try:
            targets: dict[str, str] = {}
            for label, starter in (
                ("echo", lambda: start_echo(home)),
                ("on", lambda: start_inference(home, repository, True)),
                ("off", lambda: start_inference(home, repository, False)),
                ("defaults", lambda: start_defaults(home, repository)),
            ):
                process, targets[label] = starter()
                processes.append(process)
            samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for _ in range(rounds):
                for concurrency in CONCURRENCY:
                    samples.setdefault(("echo", "", concurrency), []).append(
                        run_load(targets["echo"], payloads["echo"], concurrency, seconds, warmup)
                    )
                    for model in MODELS:
                        for label in ("off", "on", "defaults"):
                            result = run_load(targets[label], payloads[model], concurrency, seconds, warmup)
                            samples.setdefault((model, label, concurrency), []).append(result)
            try:
                records += ghz_records(targets, payloads, quick)
            except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:  # keep the other records
                print(f"[bench] inference: ghz records skipped: {exc}", file=sys.stderr)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
    summary = {key: _median_of(runs) for key, runs in samples.items()}
    records += _records(summary, raw, quick, seconds, rounds)
    curves: dict[str, dict[int, float]] = {}
    for (model, label, concurrency), figures in summary.items():
        curves.setdefault(
            model if model == "echo" else f"{model} {label if label == 'defaults' else 'batching ' + label}", {}
        )[concurrency] = figures["p50_ms"]
    _plot(curves, RESULTS / "inference_latency.png")
    from bench import inference_rest  # REST vs gRPC on one server: inference.rest_vs_grpc.*

    records += inference_rest.run(quick)
    return records


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for result in runs:
        for code, count in result["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {
        "rps": median([r["rps"] for r in runs]),
        "p50_ms": median([r["p50_ms"] for r in runs]),
        "p99_ms": median([r["p99_ms"] for r in runs]),
        "errors": errors,
        "rounds": len(runs),
    }


def _records(
    summary: dict[tuple[str, str, int], dict[str, Any]],
    raw: dict[str, tuple[float, dict[str, Any]]],
    quick: bool,
    seconds: float,
    rounds: int,
) -> list[Record]:
    common = {"quick": quick, "seconds_per_round": seconds, "rounds": rounds, "tracing": "off"}
    records: list[Record] = []
    for concurrency in CONCURRENCY:
        echo = summary[("echo", "", concurrency)]
        params = {**common, "concurrency": concurrency, "errors": echo["errors"]}
        records.append(Record(f"inference.rps.echo.c{concurrency}", echo["rps"], "req/s", "higher", params))
        records.append(Record(f"inference.p50_ms.echo.c{concurrency}", echo["p50_ms"], "ms", "lower", params))
    for model in MODELS:
        best_raw, raw_params = raw[model]
        for concurrency in CONCURRENCY:
            echo = summary[("echo", "", concurrency)]
            point = summary[(model, "defaults", concurrency)]
            params = {**common, "tracing": "on (file, defaults)", "concurrency": concurrency, "errors": point["errors"]}
            records += [
                Record(f"inference.rps.{model}.c{concurrency}.defaults", point["rps"], "req/s", "higher", params),
                Record(f"inference.p50_ms.{model}.c{concurrency}.defaults", point["p50_ms"], "ms", "lower", params),
                Record(
                    f"inference.rps_vs_echo.{model}.c{concurrency}.defaults",
                    point["rps"] / echo["rps"],
                    "ratio",
                    "higher",
                    {**params, "echo_rps": echo["rps"], "rps": point["rps"]},
                ),
            ]
            for label in ("off", "on"):
                point = summary[(model, label, concurrency)]
                suffix = f"{model}.c{concurrency}.batching_{label}"
                params = {**common, "concurrency": concurrency, "batching": label, "errors": point["errors"]}
                records += [
                    Record(f"inference.rps.{suffix}", point["rps"], "req/s", "higher", params),
                    Record(f"inference.p50_ms.{suffix}", point["p50_ms"], "ms", "lower", params),
                    Record(f"inference.p99_ms.{suffix}", point["p99_ms"], "ms", "lower", params),
                    Record(
                        f"inference.served_vs_raw_ort.{suffix}",
                        point["rps"] / best_raw,
                        "ratio",
                        "higher",
                        {
                            **params,
                            "raw_ort_inferences_per_s": best_raw,
                            **{f"raw_{k}": v for k, v in raw_params.items()},
                        },
                    ),
                    Record(
                        f"inference.rps_vs_echo.{suffix}",
                        point["rps"] / echo["rps"],
                        "ratio",
                        "higher",
                        {**params, "echo_rps": echo["rps"]},
                    ),
                ]
        c1_on, c1_off = summary[(model, "on", 1)], summary[(model, "off", 1)]
        echo1 = summary[("echo", "", 1)]
        c1_defaults = summary[(model, "defaults", 1)]
        records.append(
            Record(
                f"inference.latency_vs_echo.{model}.c1.defaults",
                c1_defaults["p50_ms"] / echo1["p50_ms"],
                "ratio",
                "lower",
                {
                    **common,
                    "tracing": "on (file, defaults)",
                    "p50_ms": c1_defaults["p50_ms"],
                    "echo_p50_ms": echo1["p50_ms"],
                },
            )
        )
        records.append(
            Record(
                f"inference.latency_vs_echo.{model}.c1",
                c1_off["p50_ms"] / echo1["p50_ms"],
                "ratio",
                "lower",
                {**common, "p50_ms": c1_off["p50_ms"], "echo_p50_ms": echo1["p50_ms"], "batching": "off"},
            )
        )
        records.append(
            Record(
                f"inference.batching_on_vs_off.{model}.c1",
                c1_on["rps"] / c1_off["rps"],
                "ratio",
                "higher",
                {**common, "target": ">= 0.90"},
            )
        )
        on32, off32 = summary[(model, "on", 32)], summary[(model, "off", 32)]
        records.append(
            Record(f"inference.batching_gain.{model}.c32", on32["rps"] / off32["rps"], "ratio", "higher", common)
        )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """``echo`` and ``load`` sub-commands (the processes the suite starts)."""
    parser = argparse.ArgumentParser(prog="bench.inference")
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo")
    echo.add_argument("--port-file", required=True)
    load = commands.add_parser("load")
    load.add_argument("--target", required=True)
    load.add_argument("--request-file", required=True)
    load.add_argument("--concurrency", type=int, default=8)
    load.add_argument("--seconds", type=float, default=3.0)
    load.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.command == "echo":
        serve_echo(args.port_file)
        return 0
    payload = Path(args.request_file).read_bytes()
    result = asyncio.run(_load(args.target, payload, args.concurrency, args.seconds, args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
