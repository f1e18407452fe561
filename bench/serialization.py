"""Serialization benchmark: each variant's ONNX Runtime latency, file size, worst-row cosine and accuracy
against FP32.

Three models: the digits MLP and a small transformer encoder (d_model 256, 2 layers, 16 tokens), trained
here with a fixed seed, and the packaged pretrained MiniLM sentence encoder exported with token-id inputs
(``minilm``; proof on its 64 sentences). Each goes through the service's own pipeline (export or import,
FP32, FP16, and both INT8 variants chosen by the proof's search). Latency is measured with one ONNX
Runtime CPU session per variant (1 intra-op thread, ORT_ENABLE_ALL), the variants interleaved round-robin
so machine noise hits them alike; a record is the ratio of medians to FP32's. ``worst_row_cosine`` is the
proof's number (the variant's lowest per-sample cosine with the reference). Accuracy is on the held-out
test split (270 samples: one sample is 0.37 points).
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


def interleaved_latency_ms(
    sessions: dict[str, Any], feed: dict[str, np.ndarray], batch: int, repeats: int
) -> dict[str, float]:
    """Median ms per ``run`` for each session, the sessions taking turns."""
    from aiaas_services.serialization.pipeline import proof

    rows = proof.tile_feed(feed, batch)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up
        for _ in range(3):
            session.run(None, rows)
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, rows)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: median(values) for name, values in times.items()}


def prepare_digits(kind: str, quick: bool, options: Any, workdir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A digits model trained here, exported by the service's pipeline; proof on the held-out split."""
    from aiaas_services.serialization.pipeline import run

    module, splits = train(kind, EPOCHS[kind][1 if quick else 0])
    data = run.ProofData(
        {"input": splits.x_train}, {"input": splits.x_test}, splits.y_test, "classification", source="held-out split"
    )
    prepared = run.from_module(module, splits.num_features, data, options, workdir)
    return prepared, data, {"exporter": prepared.export_settings["exporter"]}


def prepare_minilm(_quick: bool, options: Any, workdir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The packaged pretrained MiniLM exported with token-id inputs (as the tests do); proof and
    calibration on its 64 tokenized sentences, as a user's upload would be."""
    from aiaas_services.serialization import proofdata
    from aiaas_services.serialization.pipeline import inputs, run
    from tests.support import minilm

    exported = minilm.export(workdir / "minilm")
    specs = inputs.signature_of(exported.onnx_path)
    data = proofdata.from_upload(dict(exported.feed), specs, "", 256, "sentences.npz")
    prepared = run.from_onnx(exported.onnx_path, data, options, workdir / "variants")
    return prepared, data, {"exporter": "torch.onnx (TorchScript), opset 17", "sentences": len(minilm.SENTENCES)}


def bench_model(kind: str, quick: bool) -> list[Record]:
    from aiaas_services.serialization.options import pipeline_options
    from aiaas_services.serialization.pipeline import proof, run
    from aiaas_services.serialization.records import ExportSpec
    from aiaas_services.serialization.settings import SerializationSettings

    settings = SerializationSettings(latency_repeats=3)
    options = pipeline_options(ExportSpec(variants=("fp32", "fp16", "int8-dynamic", "int8-static")), settings)
    records: list[Record] = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if kind == "minilm":
            prepared, data, extra = prepare_minilm(quick, options, workdir)
        else:
            prepared, data, extra = prepare_digits(kind, quick, options, workdir)
        results = {r.variant: r for r in run.make_and_prove(prepared, data, options, workdir)}
        made = {name: r for name, r in results.items() if r.path is not None}
        sessions = {name: proof.cpu_session(r.path, threads=1) for name, r in made.items() if r.path}
        fp32 = results["fp32"].report
        common = {"model": kind, "threads": 1, "int8": "chosen by the proof's search"} | extra
        for batch in BATCHES:
            repeats = (20 if quick else 60) if batch == 32 else (50 if quick else 200)
            if kind == "transformer" and batch == 32:
                repeats //= 2
            if kind == "minilm" and batch == 32:
                repeats = 5 if quick else 10  # ~0.5 s per FP32 call here
            latency = interleaved_latency_ms(sessions, dict(data.proof), batch, repeats)
            for name in made:
                if name == "fp32":
                    continue
                settings_used = results[name].report.settings
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
                            "accepted": results[name].report.accepted,
                            "per_channel": settings_used.get("per_channel", "-"),
                            "keep_fp32": settings_used.get("keep_fp32", "-"),
                        },
                    )
                )
        for name, result in results.items():
            report = result.report
            records.append(
                Record(
                    f"serialization.worst_row_cosine.{name}.{kind}",
                    report.worst_row_cosine,
                    "cosine",
                    "higher",
                    common
                    | {
                        "p1_cosine": round(report.p1_cosine, 6),
                        "accepted": report.accepted,
                        "limits": report.limits,
                        "worst_rows": report.worst_rows,
                        "candidates_tried": len(report.candidates),
                        "samples": report.num_samples,
                    },
                )
            )
            if name == "fp32" or result.path is None:
                continue
            records.append(
                Record(
                    f"serialization.size_vs_fp32.{name}.{kind}",
                    report.size_bytes / fp32.size_bytes,
                    "ratio",
                    "lower",
                    common | {"variant_bytes": report.size_bytes, "fp32_bytes": fp32.size_bytes},
                )
            )
            if report.metric_name in ("", "none"):
                continue
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
    """The digits models and MiniLM; see the module docstring."""
    logging.getLogger().setLevel(logging.ERROR)  # ORT quantization's "consider pre-processing" advice
    torch.set_num_threads(1)
    records: list[Record] = []
    for kind in [*MODELS, "minilm"]:
        records.extend(bench_model(kind, quick))
    return records
