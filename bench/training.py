"""Training benchmark: a job's wall time through the service ÷ a bare PyTorch loop, same spec and seed.

The service side is the whole job as a client sees it: StartTrainingJob until WatchJob reports the end,
so it includes queueing, the worker hand-off, per-epoch validation and checkpoints, the test evaluation,
the curves PNG and registering the checkpoint in a real registry. The worker pool is warm (a first job
runs before timing), as it is in a running service.

The bare loop runs in a long-lived process of its own, warmed up with one epoch (as the service's worker
is warm), with the same torch thread count, optimizer implementation (multi-tensor Adam) and denormal
flushing as the service's workers, the same data split and the same initial weights; it times data
loading, the epochs and a final test accuracy. So the ratio is what the service adds, not what its
torch settings save. The loops themselves differ on purpose where the service does its own work better:
the bare loop indexes every batch out of the training tensors and standardizes every batch in the
forward pass, as a plain loop does, while the service gathers the shuffled data a chunk at a time,
slices batches from it, and standardizes the training split once (~7 % quicker per epoch in one
process); that counts for the service.

Repeats alternate between the two (in pairs, the pair's order alternating), and the record is the
median of the per-pair ratios (each job ÷ the bare loop run next to it); the ratio of the two medians
goes in its params. Both estimate the same thing, but the paired one is steadier on a machine whose
speed drifts for seconds at a time: over 11 runs on 2026-12-02 the paired medians spread 1.028-1.123
(sd 0.026, mean 1.062) and the ratios of medians 0.992-1.141 (sd 0.046, mean 1.066).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.common import Record, median, start_process

SPEC: dict[str, Any] = {
    "model_name": "bench-digits-mlp",
    "architecture": {"mlp": {"hidden_sizes": [128, 64]}},
    "data": {"sklearn": "digits"},
    "epochs": 30,
    "batch_size": 32,
    "seed": 7,
}
THREADS = 1


def bare_loop(spec: dict[str, Any], threads: int) -> float:
    """Seconds for the same training in a plain PyTorch loop (data loading to test accuracy)."""
    import torch
    import torch.nn.functional as F

    from aiaas_services.datasets import fit_standardization, load_splits
    from aiaas_services.modelzoo import build_module

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as the service's workers do (see trainer.configure_torch)
    started = time.perf_counter()
    splits = load_splits(spec["data"], spec["seed"])
    torch.manual_seed(spec["seed"])
    model = build_module(
        {
            "architecture": {"kind": "mlp", **spec["architecture"]["mlp"]},
            "task": "classification",
            "num_features": splits.num_features,
            "num_classes": splits.num_classes,
            "standardization": fit_standardization(splits.x_train),
        }
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)  # as the service builds it
    x, y = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    for epoch in range(spec["epochs"]):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(x), spec["batch_size"]):
            index = order[start : start + spec["batch_size"]]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(splits.x_test)).argmax(1).numpy() == splits.y_test).mean())
    elapsed = time.perf_counter() - started
    assert spec["epochs"] < 5 or accuracy > 0.9, accuracy
    return elapsed


def _start(service: str, home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    home.mkdir(parents=True, exist_ok=True)
    port_file = home / f"{service}.port"
    full_env = {"AIAAS_HOME": str(home), "OTEL_TRACES_EXPORTER": "none", "AIAAS_LOG_LEVEL": "WARNING", **env}
    args = [f"aiaas_services.{service}", "--port", "0", "--port-file", str(port_file)]
    return start_process(args, full_env, port_file, home / f"{service}.log")


def _service_job(client: Any, spec: Any) -> float:
    from aiaas.common.v1 import common_pb2

    started = time.perf_counter()
    job = client.wait(client.start(spec).job_id)
    elapsed = time.perf_counter() - started
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"benchmark job {job.state}: {job.failure_reason}")
    return elapsed


class WarmBareLoop:
    """A process of its own that imports torch, warms up with one epoch, then runs ``bare_loop(SPEC)`` each
    time it is asked: warm and long-lived like the service's worker, and a repeat costs the loop alone
    (not a torch import), so a run affords more repeats."""

    def __init__(self) -> None:
        code = "from bench.training import serve_bare_loops; serve_bare_loops()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )

    def run(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bare-loop process exited with code {self.process.wait()}")
        return float(json.loads(line))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


def serve_bare_loops() -> None:
    """The bare-loop process: one warm-up epoch, then one timed ``bare_loop(SPEC)`` per line on stdin."""
    bare_loop({**SPEC, "epochs": 1}, THREADS)
    for _ in sys.stdin:
        print(json.dumps(bare_loop(SPEC, THREADS)), flush=True)


def run(quick: bool) -> list[Record]:
    from aiaas.client.training import TrainingClient, parse_spec

    repeats = 9 if quick else 21  # this machine's speed swings ±25 % run to run: medians need samples
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    registry, registry_address = _start("registry", work / "registry", {})
    training, address = _start(
        "training",
        work / "training",
        {
            "AIAAS_TRAINING_REGISTRY_TARGET": registry_address,
            "AIAAS_TRAINING_MAX_CONCURRENT_JOBS": "1",
            "AIAAS_TRAINING_TORCH_THREADS": str(THREADS),
        },
    )
    bare = WarmBareLoop()
    try:
        with grpc.insecure_channel(address) as channel:
            client = TrainingClient(channel, timeout=60)
            warm = parse_spec({**SPEC, "epochs": 1})
            _service_job(client, warm)  # the worker imports torch once; later jobs find it warm
            spec = parse_spec(SPEC)
            service_times, bare_times = [], []
            for repeat in range(repeats):  # each pair's order alternates too, so neither side always goes first
                if repeat % 2:
                    bare_times.append(bare.run())
                service_times.append(_service_job(client, spec))
                if not repeat % 2:
                    bare_times.append(bare.run())
    finally:
        bare.close()
        for process in (training, registry):
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    service_median, bare_median = median(service_times), median(bare_times)
    pair_ratio = median([s / b for s, b in zip(service_times, bare_times, strict=True)])
    params = {
        "spec": SPEC,
        "torch_threads": THREADS,
        "repeats": repeats,
        "service_seconds": service_times,
        "bare_seconds": bare_times,
        "ratio_of_medians": service_median / bare_median,
    }
    return [
        Record("training.service_vs_bare_loop.mlp", pair_ratio, "ratio", "lower", params),
        Record("training.job_seconds.mlp", service_median, "s", "lower", {"repeats": repeats}),
        Record("training.bare_loop_seconds.mlp", bare_median, "s", "lower", {"repeats": repeats}),
    ]
