"""Registry benchmark: artifact throughput through the service vs `cp` on the same disk, metadata ops/s,
the service's resident-memory growth while moving a large artifact, and registering a checkpoint's small
files inline in CreateVersion vs streamed one by one.

The registry runs as its own process (SQLite + local blobs in a temp folder); this process is the load.
Each repeat uses different content (so nothing is deduplicated) and ratios compare medians taken in the
same run: ratio = cp seconds / service seconds (1.0 = as fast as cp; the service also hashes and fsyncs).
Encryption at rest is priced by a second pair of registries, plain and encrypted, side by side.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from aiaas.client.registry import RegistryClient
from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from bench.common import Record, cpu_seconds, median, start_process

MiB = 1024 * 1024
CHECKPOINT_FILES = {"weights.safetensors": 70_000, "spec.json": 2_000, "curves.png": 30_000}  # the MLP job's sizes


def _start_registry(
    home: Path, verify_reads: bool = True, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"AIAAS_HOME": str(home), "OTEL_TRACES_EXPORTER": "none", "AIAAS_LOG_LEVEL": "WARNING", **(extra or {})}
    env["AIAAS_REGISTRY_VERIFY_READS"] = "true" if verify_reads else "false"
    port_file = home / "registry.port"
    args = ["aiaas_services.registry", "--port", "0", "--port-file", str(port_file)]
    return start_process(args, env, port_file, home / "registry.log")


class _Sink(registry_pb2_grpc.RegistryServiceServicer):
    """A registry that only counts upload bytes: the bare gRPC-Python transport ceiling."""

    async def UploadArtifact(self, request_iterator, context):  # type: ignore[no-untyped-def]
        size = 0
        async for message in request_iterator:
            size += len(message.chunk)
        return registry_pb2.UploadArtifactResponse(artifact=registry_pb2.Artifact(size_bytes=size))


async def _serve_sink(port_file: Path) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * MiB)])
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(_Sink(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port_file.write_text(str(port))
    await server.wait_for_termination()


async def _sink_upload_seconds(work: Path, size: int, repeats: int) -> list[float]:
    """Seconds to stream ``size`` bytes in 1 MiB messages to the sink process (no hashing, no disk)."""
    port_file = work / "sink.port"
    process = subprocess.Popen([sys.executable, "-m", "bench.registry", "sink", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sink server did not start")
            await asyncio.sleep(0.05)
        chunk = os.urandom(MiB)
        times = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port_file.read_text()}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)

            async def requests() -> AsyncIterator[registry_pb2.UploadArtifactRequest]:
                for _ in range(size // MiB):
                    yield registry_pb2.UploadArtifactRequest(chunk=chunk)

            for _ in range(repeats):
                started = time.perf_counter()
                await stub.UploadArtifact(requests())
                times.append(time.perf_counter() - started)
        return times
    finally:
        process.terminate()
        process.wait(10)


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as handle:
        for i in range(size // MiB):
            handle.write(block[:-8] + i.to_bytes(8, "little"))


def _stamp(path: Path, repeat: int) -> None:
    """Make the file's content unique for this repeat (so the registry cannot deduplicate it)."""
    with path.open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(repeat.to_bytes(8, "little"))


async def _transfers(client: RegistryClient, work: Path, size: int, repeats: int) -> dict[str, list[float]]:
    source = work / "artifact.bin"
    _write_file(source, size)
    times: dict[str, list[float]] = {"cp": [], "upload": [], "download": []}
    for repeat in range(repeats):
        _stamp(source, repeat)
        target = work / "cp-copy.bin"
        started = time.perf_counter()
        subprocess.run(["cp", str(source), str(target)], check=True)
        times["cp"].append(time.perf_counter() - started)
        target.unlink()

        version = await client.create_version("bench-artifacts")
        started = time.perf_counter()
        await client.upload_file("bench-artifacts", version.version, "artifact.bin", source)
        times["upload"].append(time.perf_counter() - started)

        download = work / "downloaded.bin"
        started = time.perf_counter()
        await client.download_to(("bench-artifacts", version.version), "artifact.bin", download)
        times["download"].append(time.perf_counter() - started)
        download.unlink()
    source.unlink()
    return times


async def _metadata_ops(client: RegistryClient, seconds: float, concurrency: int = 8) -> float:
    await client.create_model("bench-meta", exist_ok=True)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            version = await client.create_version("bench-meta", metrics={"acc": 0.5}, tags={"k": "v"})
            await client.get_version(("bench-meta", version.version))
            await client.stub.ListVersions(registry_pb2.ListVersionsRequest(model_name="bench-meta", page_size=20))
            done += 3

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return done / (time.perf_counter() - started)


async def _checkpoint_pushes(client: RegistryClient, work: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds to register a training checkpoint's three small files as a READY version: inside the
    CreateVersion call (what ``push`` does below its inline limit) against one upload stream per file
    plus CreateVersion and SetVersionStatus; alternating, fresh bytes each time."""
    times: dict[str, list[float]] = {"inline": [], "streamed": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for way, inline_bytes in (("inline", 4 * MiB), ("streamed", 0)):
            paths = {}
            for name, size in CHECKPOINT_FILES.items():
                paths[name] = work / f"{way}-{name}"
                paths[name].write_bytes(os.urandom(size))
            started = time.perf_counter()
            await client.push("bench-checkpoint", paths, inline_bytes=inline_bytes)
            if repeat:
                times[way].append(time.perf_counter() - started)
    return times


async def _run(quick: bool, work: Path, address: str, pid: int) -> list[Record]:
    size = (64 if quick else 256) * MiB
    repeats = 3
    rss_size = (128 if quick else 1024) * MiB
    options = [("grpc.max_receive_message_length", 64 * MiB)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        client = RegistryClient(channel, actor="bench")
        warm = await client.create_version("bench-warm")
        await client.upload_bytes("bench-warm", warm.version, "w.bin", os.urandom(4 * MiB))
        await client.download_bytes(("bench-warm", warm.version), "w.bin")
        baseline = _rss_kib(pid, "VmRSS")

        times = await _transfers(client, work, size, repeats)
        sink = median(await _sink_upload_seconds(work, size, repeats))

        big = work / "big.bin"
        _write_file(big, rss_size)
        version = await client.create_version("bench-rss")
        await client.upload_file("bench-rss", version.version, "big.bin", big)
        await client.download_to(("bench-rss", version.version), "big.bin", work / "big-copy.bin")
        peak = _rss_kib(pid, "VmHWM")
        big.unlink()
        (work / "big-copy.bin").unlink()

        ops = await _metadata_ops(client, 3.0 if quick else 10.0)
        pushes = await _checkpoint_pushes(client, work, 10 if quick else 30)

    cp, up, down = median(times["cp"]), median(times["upload"]), median(times["download"])
    params = {"size_mib": size // MiB, "repeats": repeats, "backend": "sqlite+local", "cp_s": round(cp, 3)}
    mb = size / 1e6
    return [
        Record("registry.upload_vs_disk_copy", cp / up, "ratio", "higher", {**params, "upload_s": round(up, 3)}),
        Record(
            "registry.download_vs_disk_copy", cp / down, "ratio", "higher", {**params, "download_s": round(down, 3)}
        ),
        Record("registry.upload_mb_per_s", mb / up, "MB/s", "higher", params),
        Record("registry.download_mb_per_s", mb / down, "MB/s", "higher", params),
        Record("registry.disk_copy_mb_per_s", mb / cp, "MB/s", "higher", params),
        Record("registry.grpc_sink_mb_per_s", mb / sink, "MB/s", "higher", {**params, "what": "bare gRPC, no I/O"}),
        Record("registry.upload_vs_grpc_sink", sink / up, "ratio", "higher", params),
        Record("registry.metadata_ops_per_s", ops, "ops/s", "higher", {"mix": "create+get+list", "concurrency": 8}),
        Record(
            "registry.checkpoint_push_inline_vs_streamed",
            median(pushes["inline"]) / median(pushes["streamed"]),
            "ratio",
            "lower",
            {
                "files_bytes": CHECKPOINT_FILES,
                "repeats": len(pushes["inline"]),
                "inline_ms": round(median(pushes["inline"]) * 1e3, 2),
                "streamed_ms": round(median(pushes["streamed"]) * 1e3, 2),
            },
        ),
        Record(
            "registry.rss_growth_mib",
            (peak - baseline) / 1024,
            "MiB",
            "lower",
            {"moved_mib": rss_size // MiB, "direction": "upload+download", "target_mib": 64},
        ),
    ]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream_seconds(client: RegistryClient, ref: tuple[str, int]) -> float:
    """Seconds to receive an artifact's chunks (no client-side hashing or disk: the server's cost shows)."""
    started = time.perf_counter()
    _, chunks = await client.download_chunks(ref, "artifact.bin")
    async for _ in chunks:
        pass
    return time.perf_counter() - started


async def _verified_pairs(
    addresses: dict[str, str], pids: dict[str, int], work: Path, size: int, pairs: int
) -> dict[str, list[float]]:
    """Download the same bytes from a registry that hashes while it serves and one that does not, in
    adjacent pairs whose order alternates; also each server's CPU seconds per download (``<way>_cpu``)."""
    source = work / "verify.bin"
    _write_file(source, size)
    options = [("grpc.max_receive_message_length", 64 * MiB)]
    times: dict[str, list[float]] = {key: [] for way in addresses for key in (way, f"{way}_cpu")}
    channels = {way: grpc.aio.insecure_channel(address, options=options) for way, address in addresses.items()}
    try:
        clients = {way: RegistryClient(channel, actor="bench") for way, channel in channels.items()}
        refs = {}
        for way, client in clients.items():
            version = await client.create_version("bench-verify")
            await client.upload_file("bench-verify", version.version, "artifact.bin", source)
            refs[way] = ("bench-verify", version.version)
            await _stream_seconds(client, refs[way])  # warm
        order = list(addresses)
        for pair in range(pairs):
            for way in order if pair % 2 == 0 else reversed(order):
                cpu = _cpu_seconds(pids[way])
                times[way].append(await _stream_seconds(clients[way], refs[way]))
                times[f"{way}_cpu"].append(_cpu_seconds(pids[way]) - cpu)
    finally:
        for channel in channels.values():
            await channel.close()
        source.unlink()
    return times


def verified_vs_unverified(quick: bool) -> Record:
    """Download throughput with verify_reads on ÷ off (two registry processes, measured side by side)."""
    work = Path(tempfile.mkdtemp(prefix="aiaas-bench-verify-"))
    started = {way: _start_registry(work / way, verify_reads=way == "verified") for way in ("verified", "plain")}
    size = (64 if quick else 256) * MiB
    pairs = 5 if quick else 9
    try:
        addresses = {way: address for way, (_, address) in started.items()}
        pids = {way: process.pid for way, (process, _) in started.items()}
        times = asyncio.run(_verified_pairs(addresses, pids, work, size, pairs))
    finally:
        for process, _ in started.values():
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)
    ratios = [plain / verified for verified, plain in zip(times["verified"], times["plain"], strict=True)]
    return Record(
        "registry.download_verified_vs_unverified",
        median(ratios),
        "ratio",
        "higher",
        {
            "what": "download throughput, verify_reads on ÷ off (median of paired ratios)",
            "size_mib": size // MiB,
            "pairs": pairs,
            "verified_s": round(median(times["verified"]), 3),
            "unverified_s": round(median(times["plain"]), 3),
            "server_cpu_s_verified": round(median(times["verified_cpu"]), 3),
            "server_cpu_s_unverified": round(median(times["plain_cpu"]), 3),
            "machine": "shared: wall-clock pairs swing; the CPU figures say what the hashing costs",
            "target": 0.8,
        },
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def run(quick: bool) -> list[Record]:
    """Start a registry process, measure, stop it; then the encrypted-vs-plain pair."""
    work = Path(tempfile.mkdtemp(prefix="aiaas-bench-registry-"))
    process, address = _start_registry(work / "home")
    try:
        records = asyncio.run(_run(quick, work, address, process.pid))
    finally:
        _stop(process)
    try:
        return [*records, verified_vs_unverified(quick), *encryption_records(quick, work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def encryption_records(quick: bool, work: Path) -> list[Record]:
    """``registry.encrypted_vs_plain.<upload|download>``: two registries side by side, one with blobs
    encrypted at rest (AES-256-GCM envelopes), the same fresh artifact through each in turn (the order
    alternating); ratio = plain seconds / encrypted seconds, the median of the per-pair ratios.
    ``registry.encrypted_cpu_vs_plain.<way>``: the registry process's CPU seconds per transfer (/proc),
    encrypted / plain, median of the pairs (lower is better): steadier than wall time on a shared machine."""
    keys = work / "bench.keys"
    keys.write_text(base64.b64encode(os.urandom(32)).decode())
    plain, plain_address = _start_registry(work / "plain")
    sealed, sealed_address = _start_registry(work / "sealed", extra={"AIAAS_REGISTRY_ENCRYPTION_KEY_FILE": str(keys)})
    try:
        pids = {"plain": plain.pid, "sealed": sealed.pid}
        times = asyncio.run(_paired_transfers(work, plain_address, sealed_address, quick, pids))
    finally:
        _stop(plain)
        _stop(sealed)
    size_mib = 32 if quick else 128
    records = []
    for way in ("upload", "download"):
        ratios = [p / s for p, s in zip(times[f"plain_{way}"], times[f"sealed_{way}"], strict=True)]
        params = {
            "size_mib": size_mib,
            "pairs": len(ratios),
            "plain_s": round(median(times[f"plain_{way}"]), 3),
            "encrypted_s": round(median(times[f"sealed_{way}"]), 3),
            "target": 0.8,
        }
        records.append(Record(f"registry.encrypted_vs_plain.{way}", median(ratios), "ratio", "higher", params))
        cpu = [s / p for p, s in zip(times[f"plain_{way}_cpu"], times[f"sealed_{way}_cpu"], strict=True)]
        cpu_params = {
            "size_mib": size_mib,
            "pairs": len(cpu),
            "plain_cpu_s": round(median(times[f"plain_{way}_cpu"]), 3),
            "encrypted_cpu_s": round(median(times[f"sealed_{way}_cpu"]), 3),
            "ratios": [round(r, 3) for r in cpu],
        }
        records.append(Record(f"registry.encrypted_cpu_vs_plain.{way}", median(cpu), "ratio", "lower", cpu_params))
    return records


async def _paired_transfers(
    work: Path, plain: str, sealed: str, quick: bool, pids: dict[str, int]
) -> dict[str, list[float]]:
    size = (32 if quick else 128) * MiB
    pairs = 5 if quick else 9
    source = work / "paired.bin"
    _write_file(source, size)
    times: dict[str, list[float]] = {
        f"{s}_{w}{c}": [] for s in ("plain", "sealed") for w in ("upload", "download") for c in ("", "_cpu")
    }
    options = [("grpc.max_receive_message_length", 64 * MiB)]
    async with (
        grpc.aio.insecure_channel(plain, options=options) as plain_channel,
        grpc.aio.insecure_channel(sealed, options=options) as sealed_channel,
    ):
        clients = {"plain": RegistryClient(plain_channel), "sealed": RegistryClient(sealed_channel)}
        for pair in range(pairs + 1):  # the first pair warms up
            order = ("plain", "sealed") if pair % 2 else ("sealed", "plain")
            for side in order:
                _stamp(source, pair * 2 + (side == "sealed"))
                client = clients[side]
                version = await client.create_version("bench-encryption")
                cpu, started = cpu_seconds(pids[side]), time.perf_counter()
                await client.upload_file("bench-encryption", version.version, "a.bin", source)
                upload, upload_cpu = time.perf_counter() - started, cpu_seconds(pids[side]) - cpu
                target = work / f"paired-{side}.bin"
                cpu, started = cpu_seconds(pids[side]), time.perf_counter()
                await client.download_to(("bench-encryption", version.version), "a.bin", target)
                download, download_cpu = time.perf_counter() - started, cpu_seconds(pids[side]) - cpu
                target.unlink()
                if pair:
                    times[f"{side}_upload"].append(upload)
                    times[f"{side}_download"].append(download)
                    times[f"{side}_upload_cpu"].append(upload_cpu)
                    times[f"{side}_download_cpu"].append(download_cpu)
    source.unlink()
    return times


if __name__ == "__main__" and sys.argv[1:2] == ["sink"]:
    asyncio.run(_serve_sink(Path(sys.argv[2])))
elif __name__ == "__main__" and sys.argv[1:2] == ["encryption"]:  # python -m bench.registry encryption [--quick]
    _work = Path(tempfile.mkdtemp(prefix="aiaas-bench-encryption-"))
    try:
        for _record in encryption_records("--quick" in sys.argv, _work):
            print(_record.as_dict())
    finally:
        shutil.rmtree(_work, ignore_errors=True)
