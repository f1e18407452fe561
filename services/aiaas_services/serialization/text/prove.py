"""Proof of a text variant: run the served graph on strings and hold it against transformers' own output.

For embeddings the judged number is the smallest per-sentence cosine (one bad sentence is a bad model);
for classifiers the top-1 agreement with the reference and, with labels, the accuracy drop.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from aiaas_services.runtime import custom_ops
from aiaas_services.serialization.pipeline import limits, proof
from aiaas_services.textmodel import graph

TEXT_VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")
# The least per-sentence cosine of an embedding: the proof gate's worst-row cosine for models with no
# classification/regression task (pipeline/limits.py is the one table). Classifiers keep their own
# top-1 and accuracy limits below (strings in, a different proof set from the gate's arrays).
MIN_COSINE = {v: limits.default_tolerance(v, "embedding").min_worst_row_cosine for v in TEXT_VARIANTS}
MIN_TOP1 = {"fp32": 0.999, "fp16": 0.98, "int8-dynamic": 0.95, "int8-static": 0.95}
MAX_ACCURACY_DROP = {"fp32": 0.001, "fp16": 0.01, "int8-dynamic": 0.02, "int8-static": 0.02}


def reference_outputs(
    model: torch.nn.Module, folder: Path, task: str, texts: Sequence[str], max_length: int
) -> np.ndarray:
    """transformers' tokenizer + model on ``texts`` (embedding, or class probabilities), float64."""
    # transformers: loaded only when a text variant is proved (heavy)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = list(texts[start : start + 32])
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            out = model(**encoded)
            if task == "embedding":
                parts.append(graph.mean_pool(out.last_hidden_state, encoded["attention_mask"]).double().numpy())
            else:
                parts.append(torch.softmax(out.logits, dim=-1).double().numpy())
    return np.concatenate(parts)


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with the extensions' tokenizer ops registered."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    custom_ops.register(options)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_texts(sess: ort.InferenceSession, texts: Sequence[str], output: str, batch: int = 32) -> np.ndarray:
    """One named output for all ``texts``, ``batch`` strings per run."""
    parts = []
    for start in range(0, len(texts), batch):
        feed = np.array(list(texts[start : start + batch]), dtype=object)
        parts.append(sess.run([output], {"text": feed})[0])
    return np.concatenate(parts).astype(np.float64)


def prove(
    variant: str,
    path: Path,
    task: str,
    texts: Sequence[str],
    reference: np.ndarray,
    labels: np.ndarray | None = None,
    repeats: int = 10,
    threads: int = 1,
    tolerance: limits.Tolerance | None = None,
) -> proof.Report:
    """Judge the variant at ``path`` against ``reference``; the report's reason says what failed.

    An embedding is held to the limits table's worst-row and p1 cosine (``tolerance``: the request's
    overrides merged with the defaults; the defaults when None)."""
    tolerance = tolerance or limits.default_tolerance(variant, "embedding")
    sess = session(path, threads)
    output = "embedding" if task == "embedding" else "probabilities"
    outputs = run_texts(sess, texts, output)
    report = proof.Report(variant=variant, num_samples=len(texts))
    diff = np.abs(outputs - reference)
    report.max_abs_error = float(diff.max())
    report.mean_abs_error = float(diff.mean())
    norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1)
    cosines = (outputs * reference).sum(axis=1) / np.maximum(norms, 1e-12)
    report.cosine_similarity = float(cosines.min())
    report.worst_row_cosine = report.cosine_similarity
    report.p1_cosine = float(np.percentile(cosines, 1))
    report.worst_rows = [int(i) for i in np.argsort(cosines, kind="stable")[: proof.WORST_ROWS]]
    problems = []
    if not np.isfinite(outputs).all():
        problems.append("outputs contain NaN or infinity")
    if task == "embedding":
        report.metric_name, report.metric_value = "min_cosine", report.cosine_similarity
        report.reference_metric_value = 1.0
        least, p1 = tolerance.min_worst_row_cosine, tolerance.min_p1_cosine
        report.limits = {k: v for k, v in (("min_worst_row_cosine", least), ("min_p1_cosine", p1)) if v}
        if report.cosine_similarity < least:
            worst = int(cosines.argmin())
            problems.append(
                f"cosine with transformers' embedding {report.cosine_similarity:.4f} < {least} "
                f"(sentence {worst}: {texts[worst][:40]!r})"
            )
        if report.p1_cosine < p1:
            problems.append(f"1st-percentile cosine {report.p1_cosine:.4f} < {p1}")
    else:
        report.top1_agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
        report.limits = {"min_top1_agreement": MIN_TOP1[variant], "max_metric_drop": MAX_ACCURACY_DROP[variant]}
        if report.top1_agreement < MIN_TOP1[variant]:
            problems.append(f"top-1 agreement {report.top1_agreement:.4f} < {MIN_TOP1[variant]}")
        if labels is not None:
            report.metric_name = "accuracy"
            report.metric_value = float((outputs.argmax(1) == labels).mean())
            report.reference_metric_value = float((reference.argmax(1) == labels).mean())
            drop = report.reference_metric_value - report.metric_value
            if drop > MAX_ACCURACY_DROP[variant] + 1e-12:
                problems.append(f"accuracy {report.metric_value:.4f} is {drop * 100:.2f} points below the reference")
    report.size_bytes = path.stat().st_size
    report.latency_ms_batch1 = _latency(sess, texts, 1, repeats)
    report.latency_ms_batch32 = _latency(sess, texts, 32, max(3, repeats // 3))
    report.reason = "; ".join(problems)
    report.accepted = not problems
    return report


def interleaved_ratio(
    variant: Path, baseline: Path, texts: Sequence[str], batch: int, repeats: int, threads: int = 1
) -> float:
    """Median latency of ``variant`` / median of ``baseline`` at ``batch`` sentences, the two sessions
    taking turns so that machine noise hits both alike."""
    sessions = [session(variant, threads), session(baseline, threads)]
    rows = {"text": np.array([texts[i % 24] for i in range(batch)], dtype=object)}
    times: list[list[float]] = [[], []]
    for sess in sessions:
        sess.run(None, rows)
    for _ in range(max(1, repeats)):
        for index, sess in enumerate(sessions):
            start = time.perf_counter()
            sess.run(None, rows)
            times[index].append(time.perf_counter() - start)
    return statistics.median(times[0]) / statistics.median(times[1])


def _latency(sess: ort.InferenceSession, texts: Sequence[str], batch: int, repeats: int) -> float:
    """Median ms of one run on ``batch`` ordinary sentences (the first ones, tiled)."""
    rows = np.array([texts[i % 24] for i in range(batch)], dtype=object)
    sess.run(None, {"text": rows})
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        sess.run(None, {"text": rows})
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)
