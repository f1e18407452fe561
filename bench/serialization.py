"""Serialization benchmark: each variant's ONNX Runtime latency, file size and accuracy against FP32.

Two models, trained here on digits with a fixed seed: the digits MLP and a small transformer encoder
(d_model 256, 2 layers, 16 tokens, a few ms per batch-1 call). Each goes through the service's own
pipeline (export, ORT-optimized FP32, FP16, INT8 dynamic, INT8 static QDQ with MinMax calibration on the
training split, the service's reduce_range choice for this CPU). Latency is measured with one
ONNX Runtime CPU session per variant (1 intra-op thread, ORT_ENABLE_ALL), the variants interleaved
round-robin so machine noise hits them alike; a record is the ratio of medians to FP32's. Accuracy is on
the held-out test split (270 samples: one sample is 0.37 points).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import Record, median

MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"kind": "mlp", "hidden_sizes": [64]},
    "transformer": {
        "kind": "transformer",
        "sequence_length": 16,
        "d_model": 256,
        "num_heads": 4,
        "num_layers": 2,
        "dim_feedforward": 1024,
    },
}
EPOCHS = {"mlp": (20, 10), "transformer": (8, 1)}  # (full, quick); transformer: ~0.89 test accuracy at 8
BATCHES = (1, 32)


def train(kind: str, epochs: int) -> tuple[torch.nn.Module, Any]:
    """A seeded model trained on digits (RAW features in, standardization inside the module)."""
    from aiaas_services.datasets import fit_standardization, load_splits
    from aiaas_services.modelzoo import build_module, validate_spec

    splits = load_splits({"sklearn": "digits"}, seed=0)
    spec = validate_spec(
        {
            "architecture": MODELS[kind],
            "task": "classification",
            "num_features": splits.num_features,
            "num_classes": splits.num_classes,
            "standardization": fit_standardization(splits.x_train),
        }
    )
    torch.manual_seed(0)
    module = build_module(spec)
    optimizer = torch.optim.Adam(module.parameters(), lr=5e-4 if kind == "transformer" else 3e-3)
    batch = 32 if kind == "transformer" else 64
    x, y = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    module.train()
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(x[start : start + batch]), y[start : start + batch]).backward()
            optimizer.step()
    return module.eval(), splits


def interleaved_latency_ms(sessions: dict[str, Any], x: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """Median ms per ``run`` for each session, the sessions taking turns."""
    rows = np.resize(x, (batch, x.shape[1])).astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up
        for _ in range(3):
            session.run(None, {"input": rows})
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {"input": rows})
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: median(values) for name, values in times.items()}


def bench_model(kind: str, quick: bool) -> list[Record]:
    from aiaas.common.v1 import common_pb2
    from aiaas_services.serialization.options import pipeline_options
    from aiaas_services.serialization.pipeline import proof, run
    from aiaas_services.serialization.settings import SerializationSettings

    module, splits = train(kind, EPOCHS[kind][1 if quick else 0])
    settings = SerializationSettings(latency_repeats=3)
    options = pipeline_options(
        common_pb2.ExportOptions(variants=["fp32", "fp16", "int8-dynamic", "int8-static"]), settings
    )
    data = run.ProofData(splits.x_train, splits.x_test, splits.y_test, "classification")
    records: list[Record] = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        prepared = run.from_module(module, splits.num_features, data, options, workdir)
        results = {r.variant: r for r in run.make_and_prove(prepared, data, options, workdir)}
        sessions = {name: proof.cpu_session(r.path, threads=1) for name, r in results.items()}
        fp32 = results["fp32"].report
        common = {
            "model": kind,
            "exporter": prepared.export_settings["exporter"],
            "reduce_range": options.quantization.reduce_range,
            "per_channel": options.quantization.per_channel,
            "threads": 1,
        }
        for batch in BATCHES:
            repeats = (20 if quick else 60) if batch == 32 else (50 if quick else 200)
            if kind == "transformer" and batch == 32:
                repeats //= 2
            latency = interleaved_latency_ms(sessions, splits.x_test, batch, repeats)
            for name in results:
                if name == "fp32":
                    continue
                records.append(
                    Record(
                        f"serialization.latency_vs_fp32.{name}.{kind}.b{batch}",
                        latency[name] / latency["fp32"],
                        "ratio",
                        "lower",
                        common
                        | {
                            "batch": batch,
                            "variant_ms": round(latency[name], 4),
                            "fp32_ms": round(latency["fp32"], 4),
                            "repeats": repeats,
                        },
                    )
                )
        for name, result in results.items():
            if name == "fp32":
                continue
            report = result.report
            records.append(
                Record(
                    f"serialization.size_vs_fp32.{name}.{kind}",
                    report.size_bytes / fp32.size_bytes,
                    "ratio",
                    "lower",
                    common | {"variant_bytes": report.size_bytes, "fp32_bytes": fp32.size_bytes},
                )
            )
            records.append(
                Record(
                    f"serialization.accuracy_delta.{name}.{kind}",
                    report.metric_value - fp32.metric_value,
                    "accuracy (fraction)",
                    "higher",
                    common
                    | {
                        "variant_accuracy": report.metric_value,
                        "fp32_accuracy": fp32.metric_value,
                        "pytorch_accuracy": fp32.reference_metric_value,
                        "accepted": report.accepted,
                        "samples": report.num_samples,
                    },
                )
            )
    return records


def run(quick: bool) -> list[Record]:
    """Both models; see the module docstring."""
    logging.getLogger().setLevel(logging.ERROR)  # ORT quantization's "consider pre-processing" advice
    torch.set_num_threads(1)
    records: list[Record] = []
    for kind in MODELS:
        records.extend(bench_model(kind, quick))
    return records
