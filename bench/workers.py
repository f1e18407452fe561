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
CPU per request, the server's by kind of thread (event loop, gRPC core's EventEngine, other threads,
supervisor) and each worker's share of it, the cores used, the connections each worker held (``ss -p``)
and the requests each worker answered (ModelStatistics over new connections); ``cpu_breakdown`` says
what ratio that CPU implies and why.

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
    CPU ghz and the server (``server_pid`` and its children, by kind of thread) spent per OK answer, the
    cores busy meanwhile, and how many connections each server process held a second in."""
    before = _children_cpu()
    server_before = cpu_by_part(server_pid) if server_pid else {}
    machine_before = machine_busy()
    process = subprocess.Popen(ghz_command(target, request_file, seconds, cpus), stdout=subprocess.PIPE, text=True)
    time.sleep(min(1.0, seconds / 2))
    connections = connections_by_process(int(target.rsplit(":", 1)[1]))
    out, _ = process.communicate(timeout=seconds + 60)
    cpu = _children_cpu() - before
    machine = [b - a for a, b in zip(machine_before, machine_busy(), strict=True)]
    server_after = cpu_by_part(server_pid) if server_pid else {}
    parts = {key: value - server_before.get(key, 0.0) for key, value in server_after.items()}
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    ok = codes.get("OK", 0)
    wall = report["total"] / 1e9
    server = sum(value for key, value in parts.items() if not key.startswith("worker_"))
    return {
        "rps": ok / wall,
        "errors": {k: v for k, v in codes.items() if k != "OK"},
        "cpu_us_per_request": 1e6 * cpu / max(1, ok),
        "server_cpu_us_per_request": 1e6 * server / max(1, ok),
        "server_parts_us_per_request": {key: 1e6 * value / max(1, ok) for key, value in sorted(parts.items())},
        # Cores the server and ghz kept busy, and the whole machine (other sessions' work included).
        "cores_used": (server + cpu) / wall,
        "machine_busy_cores": machine[0] / max(1, machine[1]) * (os.cpu_count() or 1),
        "connections": connections,
    }


def _ticks(path: str) -> int:
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _process_parts(pid: int) -> dict[str, float]:
    """One process's CPU seconds by kind of thread: its main (event loop) thread, gRPC core's EventEngine
    threads (named ``event_engine``) and the rest (grpc.aio's completion-queue poller thread; the
    batcher's instance threads sit idle while a model runs inline on the loop)."""
    parts = {"main": 0.0, "grpc_event_engine": 0.0, "other_threads": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            seconds = _ticks(f"/proc/{pid}/task/{tid}/stat") / tick
        except OSError:  # the thread ended meanwhile
            continue
        key = "main" if tid == str(pid) else "grpc_event_engine" if comm.startswith("event_engine") else "other_threads"
        parts[key] += seconds
    return parts


def cpu_by_part(pid: int) -> dict[str, float]:
    """CPU seconds of a server by kind of thread (see ``_process_parts``), summed over its processes. A
    supervisor's own CPU is ``supervisor``; each worker's total also appears as ``worker_<pid>`` (how the
    work was split; not part of the sum). A single process (workers=1) has no supervisor."""
    try:
        children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if not children:
            return _process_parts(pid)
        parts = {"supervisor": _ticks(f"/proc/{pid}/stat") / os.sysconf("SC_CLK_TCK")}
    except OSError:
        return {}
    for child in children:
        try:
            own = _process_parts(child)
        except OSError:
            continue
        for key, value in own.items():
            parts[key] = parts.get(key, 0.0) + value
        parts[f"worker_{child}"] = sum(own.values())
    return parts


def machine_busy() -> tuple[int, int]:
    """Busy and total jiffies of the whole machine since boot (``/proc/stat``; idle and iowait are not busy)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


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


def cpu_breakdown(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Where the CPU went, per setting (medians over the ghz runs), and the ratio it implies.

    With one worker the event loop's thread is the bottleneck: it needs about one core, while gRPC core's
    EventEngine threads, grpc.aio's poller thread and ghz run beside it on the second core, which is not
    full. With two workers everything shares the two cores, which are full. So workers=2 ÷ 1 comes to about
    2 x main-thread CPU per request at 1 worker ÷ (server + ghz CPU per request at 2 workers):
    ``ratio_ceiling_2_cores``; ``main_thread_cores_1`` near 1.0 and ``cores_used_2`` near 2.0 say those
    premises held in this run (``machine_busy_cores_*`` counts every process on the machine).
    """
    params: dict[str, Any] = {}
    for label, rows in runs.items():
        keys = sorted({key for row in rows for key in row["server_parts_us_per_request"]})
        parts = {key: median([row["server_parts_us_per_request"].get(key, 0.0) for row in rows]) for key in keys}
        workers = sorted((value for key, value in parts.items() if key.startswith("worker_")), reverse=True)
        params[f"server_cpu_us_per_request_by_thread_{label}"] = {
            key: round(value, 1) for key, value in parts.items() if not key.startswith("worker_")
        }
        if workers:  # each worker's share of the workers' CPU, largest first (how evenly the load split)
            params[f"worker_cpu_share_{label}"] = [round(value / sum(workers), 3) for value in workers]
        params[f"cores_used_{label}"] = round(median([row["cores_used"] for row in rows]), 2)
        params[f"machine_busy_cores_{label}"] = round(median([row["machine_busy_cores"] for row in rows]), 2)
        params[f"main_thread_cores_{label}"] = round(
            median([row["rps"] * row["server_parts_us_per_request"].get("main", 0.0) / 1e6 for row in rows]), 2
        )
    if "1" in runs and "2" in runs:
        main_1 = median([row["server_parts_us_per_request"].get("main", 0.0) for row in runs["1"]])
        total_2 = median([row["server_cpu_us_per_request"] + row["cpu_us_per_request"] for row in runs["2"]])
        params["ratio_ceiling_2_cores"] = round(2 * main_1 / total_2, 3)
    return params


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
    ghz_runs: dict[str, list[dict[str, Any]]] = {}
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
                        ghz_runs.setdefault(label, []).append(ghz)
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
    params |= {f"server_cpu_us_per_request_{label}": round(median(v), 1) for label, v in server_cpu.items()}
    params |= cpu_breakdown(ghz_runs)
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
