"""Inference worker processes on one port: requests/s with ``workers=2`` (and ``auto``) ÷ ``workers=1``.

Three servers on the same example MLP run side by side (workers 1, 2 and auto), each its own supervisor
and processes. SO_REUSEPORT spreads *connections*, not requests, over the workers (at random), so every
load opens 16 connections with 64 requests in flight (with 8, a round gives one worker 6 or more of them
three times in ten, and none twice in 256); points run in alternating rounds and a record is the median of
the per-round ratios (points adjacent in time). The load generator shares the machine's cores with the
servers (on a 2-core machine that caps the ratio well below 2: whatever it spends per request is taken
from the workers), so the records come from ghz (../shared/tools/ghz) when it is present, run as cheaply
as it goes: the request pre-serialized (``-B``), no call-data templating, one Go thread (``GHZ_CPUS``).
The Python generator (a separate process, raw bytes in and out) runs in the same rounds; its figures
follow as ``….python`` (without ghz, they are the records).

Records: ``inference.workers_scaling.mlp.c64`` (rps workers=2 ÷ workers=1), ``…mlp.c64.auto``
(workers=auto ÷ 1), ``…c64.python`` and ``…c64.auto.python``; params carry the rps figures, ghz's own
CPU per request, the connections each worker held (``ss -p``) and the requests each worker answered
(ModelStatistics over new connections).

By hand: ``python -m bench.workers load --target HOST:PORT --request-file F --concurrency 64 --seconds 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, Record, median, start_process

METHOD = "/inference.GRPCInferenceService/ModelInfer"
CONCURRENCY = 64
CONNECTIONS = 16
GHZ = ROOT.parent / "shared" / "tools" / "ghz"
GHZ_REQUEST = ROOT / "bench" / "ghz" / "mlp_raw.bin"  # ModelInfer for "mlp", serialized
GHZ_CPUS = 1  # Go threads for ghz (GOMAXPROCS): one is cheaper per request than two on 2 cores
SERVER_ENV = {"OTEL_TRACES_EXPORTER": "none", "AIAAS_LOG_LEVEL": "WARNING"}


async def _load(
    target: str, payload: bytes, concurrency: int, connections: int, seconds: float, warmup: float
) -> dict[str, Any]:
    import grpc

    # A distinct channel argument per channel gives each its own TCP connection (subchannels are shared
    # between channels whose arguments are equal).
    channels = [grpc.aio.insecure_channel(target, options=[("aiaas.bench.connection", i)]) for i in range(connections)]
    calls = [channel.unary_unary(METHOD) for channel in channels]
    done = 0
    errors: dict[str, int] = {}
    begin = time.perf_counter() + warmup
    end = begin + seconds

    async def worker(call: Any) -> None:
        nonlocal done
        while (started := time.perf_counter()) < end:
            try:
                await call(payload, timeout=30)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                continue
            if started >= begin:
                done += 1

    await asyncio.gather(*(worker(calls[i % connections]) for i in range(concurrency)))
    for channel in channels:
        await channel.close()
    return {"count": done, "rps": done / seconds, "errors": errors}


def run_load(target: str, request_file: Path, seconds: float, warmup: float) -> dict[str, Any]:
    """One Python load run in a separate process; its JSON summary."""
    args = ["load", "--target", target, "--request-file", str(request_file), "--seconds", str(seconds)]
    completed = subprocess.run(
        [sys.executable, "-m", "bench.workers", *args, "--warmup", str(warmup)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + warmup + 60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load process failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ghz_command(target: str, request_file: Path, seconds: float, cpus: int = GHZ_CPUS) -> list[str]:
    """ghz as cheap per request as it goes: the request pre-serialized (``-B``, no JSON to protobuf per
    call), no templating of call data, ``cpus`` Go threads, CONCURRENCY calls over CONNECTIONS connections."""
    return [
        str(GHZ),
        "--insecure",
        "--call",
        "inference.GRPCInferenceService.ModelInfer",
        *("-B", str(request_file), "--disable-template-functions", "--disable-template-data"),
        *("-c", str(CONCURRENCY), "--connections", str(CONNECTIONS), "--cpus", str(cpus)),
        *("-z", f"{seconds}s", "--format", "json", target),
    ]


def run_ghz(
    target: str, request_file: Path, seconds: float, cpus: int = GHZ_CPUS, server_pid: int = 0
) -> dict[str, Any]:
    """One ghz run for ``seconds``: OK answers per second (the few calls cut off at the end are not OK), the
    CPU ghz and the server (``server_pid`` and its children) spent per OK answer, and how many connections
    each server process held a second in."""
    before = _children_cpu()
    server_before = tree_cpu(server_pid) if server_pid else 0.0
    process = subprocess.Popen(ghz_command(target, request_file, seconds, cpus), stdout=subprocess.PIPE, text=True)
    time.sleep(min(1.0, seconds / 2))
    connections = connections_by_process(int(target.rsplit(":", 1)[1]))
    out, _ = process.communicate(timeout=seconds + 60)
    cpu = _children_cpu() - before
    server = tree_cpu(server_pid) - server_before if server_pid else 0.0
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    ok = codes.get("OK", 0)
    return {
        "rps": ok / (report["total"] / 1e9),
        "errors": {k: v for k, v in codes.items() if k != "OK"},
        "cpu_us_per_request": 1e6 * cpu / max(1, ok),
        "server_cpu_us_per_request": 1e6 * server / max(1, ok),
        "connections": connections,
    }


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process and its descendants (a supervisor and its workers)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu(int(child)) for child in children)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def connections_by_process(port: int) -> list[int]:
    """Established connections on the server side of ``port``, counted per owning process (``ss -p``),
    largest first: SO_REUSEPORT spreads connections, so this is how the load reaches each worker."""
    try:
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    pids: dict[str, int] = {}
    for match in re.finditer(r"pid=(\d+)", out):
        pids[match.group(1)] = pids.get(match.group(1), 0) + 1
    return sorted(pids.values(), reverse=True)


def requests_by_worker(target: str, probes: int = 24) -> list[int]:
    """Requests each worker behind ``target`` has answered since it started, largest first.

    ModelStatistics answers for the process that holds the connection, and the kernel hands each new
    connection to one worker at random: ``probes`` new connections reach every worker (the chance one of
    two is missed is 2^-23), and each worker's count is one of the distinct figures they return.
    """
    import grpc

    from aiaas.oip.v2 import grpc_service_pb2 as pb
    from aiaas.oip.v2 import grpc_service_pb2_grpc

    counts = set()
    for i in range(probes):
        with grpc.insecure_channel(target, options=[("aiaas.bench.probe", i)]) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="mlp"), timeout=10)
            counts.add(sum(model.inference_count for model in stats.model_stats))
    return sorted(counts, reverse=True)


def start_server(home: Path, repository: Path, workers: str) -> tuple[subprocess.Popen[bytes], str]:
    """The inference service on the example MLP with ``workers`` processes (2 instances of 1 thread each)."""
    port_file = home / f"workers-{workers}.port"
    env = {
        **SERVER_ENV,
        "AIAAS_HOME": str(home / f"workers-{workers}"),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_WORKERS": workers,
    }
    args = ["aiaas_services.inference", "--port", "0", "--http-port", "-1", "--port-file", str(port_file)]
    return start_process(args, env, port_file, home / f"workers-{workers}.log")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def run(quick: bool) -> list[Record]:
    """The suite (quick: 1 round of 2 s per point; full: 5 rounds of 3 s)."""
    from aiaas_services.inference.examples import build_repository
    from aiaas_services.inference.supervisor import resolve_workers
    from bench.inference import request_bytes

    seconds, warmup, rounds = (2.0, 0.5, 1) if quick else (3.0, 0.5, 5)
    labels = ("1", "2", "auto")
    samples: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, int] = {}
    ghz_cpu: dict[str, list[float]] = {}
    server_cpu: dict[str, list[float]] = {}
    connections: dict[str, list[int]] = {}
    split: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        home = Path(tmp)
        repository = build_repository(home / "models", ("mlp",))
        payload = home / "mlp.bin"
        payload.write_bytes(request_bytes("mlp"))
        processes: list[subprocess.Popen[bytes]] = []
        try:
            targets = {}
            pids: dict[str, int] = {}
            for label in labels:
                process, targets[label] = start_server(home, repository, label)
                processes.append(process)
                pids[label] = process.pid
            for index in range(rounds):
                order = labels if index % 2 == 0 else tuple(reversed(labels))
                for label in order:
                    result = run_load(targets[label], payload, seconds, warmup)
                    samples.setdefault(("python", label), []).append(result["rps"])
                    for code, count in result["errors"].items():
                        errors[code] = errors.get(code, 0) + count
                    if GHZ.exists():
                        ghz = run_ghz(targets[label], GHZ_REQUEST, seconds, server_pid=pids[label])
                        samples.setdefault(("ghz", label), []).append(ghz["rps"])
                        ghz_cpu.setdefault(label, []).append(ghz["cpu_us_per_request"])
                        server_cpu.setdefault(label, []).append(ghz["server_cpu_us_per_request"])
                        connections.setdefault(label, ghz["connections"])
            split = {label: requests_by_worker(target) for label, target in targets.items()}
        finally:
            _stop(processes)
    params: dict[str, Any] = {
        "quick": quick,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "connections": CONNECTIONS,
    }
    params |= {"auto_workers": resolve_workers("auto"), "load_errors": errors, "machine": "shared 2-core"}
    # How the load reached the workers: requests each answered over the whole run (both generators), and
    # the connections each held during the first ghz run; ghz's own CPU per request (median of runs).
    params |= {f"requests_per_worker_{label}": counts for label, counts in split.items()}
    params |= {f"ghz_connections_per_worker_{label}": counts for label, counts in connections.items()}
    params |= {f"ghz_cpu_us_per_request_{label}": round(median(v), 1) for label, v in ghz_cpu.items()}
    # Why the ratio stays below 2 here: the 2 cores are shared by the workers and ghz, so with one worker
    # saturating a core, workers=2 can reach at most 2 x server_1 / (server_2 + ghz) times its rate.
    params |= {f"server_cpu_us_per_request_{label}": round(median(v), 1) for label, v in server_cpu.items()}
    if "1" in server_cpu and "2" in server_cpu:
        ceiling = 2 * median(server_cpu["1"]) / (median(server_cpu["2"]) + median(ghz_cpu["2"]))
        params["ratio_ceiling_2_cores"] = round(ceiling, 3)
    # The record is ghz's when present: it costs the shared cores less per request, so more of them serve.
    primary = "ghz" if ("ghz", "1") in samples else "python"
    records = []
    for generator in ("ghz", "python"):
        if (generator, "1") not in samples:
            continue
        rps = {label: median(samples[(generator, label)]) for label in labels}
        suffix = "" if generator == primary else f".{generator}"
        figures = {f"rps_workers_{label}": round(value, 1) for label, value in rps.items()}
        for label, name in (("2", ""), ("auto", ".auto")):
            # Paired: each round's ratio of points measured next to each other, then the median of those.
            pairs = [a / b for a, b in zip(samples[(generator, label)], samples[(generator, "1")], strict=True)]
            records.append(
                Record(
                    f"inference.workers_scaling.mlp.c{CONCURRENCY}{name}{suffix}",
                    median(pairs),
                    "ratio",
                    "higher",
                    {**params, **figures, "ratio_per_round": [round(p, 3) for p in pairs], "load_generator": generator},
                )
            )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.workers load ...`` (one load run, JSON on stdout) or the suite."""
    parser = argparse.ArgumentParser(prog="bench.workers")
    sub = parser.add_subparsers(dest="command")
    load = sub.add_parser("load")
    load.add_argument("--target", required=True)
    load.add_argument("--request-file", required=True)
    load.add_argument("--concurrency", type=int, default=CONCURRENCY)
    load.add_argument("--connections", type=int, default=CONNECTIONS)
    load.add_argument("--seconds", type=float, default=4.0)
    load.add_argument("--warmup", type=float, default=1.0)
    sub.add_parser("suite").add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "load":
        payload = Path(args.request_file).read_bytes()
        result = asyncio.run(_load(args.target, payload, args.concurrency, args.connections, args.seconds, args.warmup))
        print(json.dumps(result))
        return 0
    for record in run(quick=getattr(args, "quick", False)):
        print(json.dumps(record.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
