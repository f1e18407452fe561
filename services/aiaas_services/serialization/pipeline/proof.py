"""Proof that a variant is right: compare its outputs, sample by sample and output by output, with the
reference's on the proof data, and hold the numbers against the limits in ``limits.py``.

One bad sample must fail the gate, so every number is per row (the first axis is the sample) and the
gate reads the worst row: worst-row and 1st-percentile cosine, largest absolute and relative error.
Aggregates over all outputs flattened hide a bad row behind many good ones and are not used.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from aiaas_services.serialization.pipeline.limits import Tolerance

Feed = Mapping[str, np.ndarray]
WORST_ROWS = 5  # rows named in a report
REL_FLOOR = 1e-3  # relative error divides by max(|ref|, REL_FLOOR x the output's largest |ref|)


@dataclasses.dataclass
class OutputProof:
    """Per-row comparison of one output."""

    name: str
    worst_row_cosine: float = 1.0  # 1.0 when rows have one element (cosine says nothing there)
    p1_cosine: float = 1.0
    mean_cosine: float = 1.0
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_rows: list[int] = dataclasses.field(default_factory=list)
    scale: float = 1.0  # max(1, max |reference|)
    cosine_applies: bool = True


@dataclasses.dataclass
class Candidate:
    """One INT8 setting the search tried."""

    settings: dict[str, str]
    passed: bool
    reason: str  # why it lost (failed proof, or slower than the winner); empty for the winner
    latency_ms_batch32: float = 0.0
    worst_row_cosine: float = 0.0


@dataclasses.dataclass
class Report:
    """The numbers of one variant's proof (mirrors the VariantReport message)."""

    variant: str
    accepted: bool = False
    failed: bool = False  # the variant could not be made or run (reason says why); nothing to register
    reason: str = ""
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0
    cosine_similarity: float = 0.0  # mean per-row cosine over outputs where cosine applies
    worst_row_cosine: float = 0.0
    p1_cosine: float = 0.0
    max_rel_error: float = 0.0
    worst_rows: list[int] = dataclasses.field(default_factory=list)
    top1_agreement: float = 0.0
    metric_name: str = ""
    metric_value: float = 0.0
    reference_metric_value: float = 0.0
    size_bytes: int = 0
    latency_ms_batch1: float = 0.0
    latency_ms_batch32: float = 0.0
    latency_vs_fp32_batch32: float = 0.0  # INT8 search winner: measured interleaved with FP32 (0 = not measured)
    preferred_provider: str = ""
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    num_samples: int = 0
    outputs: list[OutputProof] = dataclasses.field(default_factory=list)
    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    limits: dict[str, float] = dataclasses.field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The numbers as registry version metrics."""
        result = {
            "max_abs_error": self.max_abs_error,
            "mean_abs_error": self.mean_abs_error,
            "cosine_similarity": self.cosine_similarity,
            "worst_row_cosine": self.worst_row_cosine,
            "p1_cosine": self.p1_cosine,
            "max_rel_error": self.max_rel_error,
            "size_bytes": float(self.size_bytes),
            "latency_ms_batch1": self.latency_ms_batch1,
            "latency_ms_batch32": self.latency_ms_batch32,
            "num_samples": float(self.num_samples),
        }
        if self.metric_name and self.metric_name != "none":
            result[self.metric_name] = self.metric_value
            result[f"reference_{self.metric_name}"] = self.reference_metric_value
        if self.top1_agreement:
            result["top1_agreement"] = self.top1_agreement
        return result


def task_metric(task: str, outputs: np.ndarray, x: np.ndarray | None, y: np.ndarray | None) -> tuple[str, float]:
    """(name, value): accuracy for classification, MSE for regression, reconstruction MSE for the VAE."""
    if task == "classification" and y is not None:
        return "accuracy", float((outputs.argmax(axis=1) == y.reshape(-1)).mean())
    if task == "regression" and y is not None:
        return "mse", float(np.mean((outputs.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2))
    if task == "vae" and x is not None:
        return "reconstruction_mse", float(np.mean((outputs - x) ** 2))
    return "none", 0.0


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with full optimization, as the inference service would build it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rows_of(feed: Feed) -> int:
    return len(next(iter(feed.values()))) if feed else 0


def slice_feed(feed: Feed, start: int, stop: int) -> dict[str, np.ndarray]:
    return {name: array[start:stop] for name, array in feed.items()}


def run_batched(session: ort.InferenceSession, feed: Feed, batch: int = 64) -> dict[str, np.ndarray]:
    """Every output for every row of the feed, a batch at a time (FP64 for comparison)."""
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rows = rows_of(feed)
    for start in range(0, rows, batch):
        for name, value in zip(names, session.run(names, slice_feed(feed, start, start + batch)), strict=True):
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(p).astype(np.float64) for n, p in parts.items()}


def tile_feed(feed: Feed, batch: int) -> dict[str, np.ndarray]:
    """``batch`` rows from the feed (repeated when it has fewer)."""
    index = np.arange(batch) % max(1, rows_of(feed))
    return {name: array[index] for name, array in feed.items()}


def median_latency_ms(session: ort.InferenceSession, feed: Feed, batch: int, repeats: int) -> float:
    """Median wall time of one ``run`` at ``batch`` rows."""
    rows = tile_feed(feed, batch)
    for _ in range(2):
        session.run(None, rows)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        session.run(None, rows)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def interleaved_ratio(variant: Path, baseline: Path, feed: Feed, batch: int, repeats: int, threads: int = 1) -> float:
    """Median latency of ``variant`` / median of ``baseline`` at ``batch`` rows, the two taking turns so
    that machine noise hits both alike."""
    sessions = [cpu_session(variant, threads), cpu_session(baseline, threads)]
    rows = tile_feed(feed, batch)
    times: list[list[float]] = [[], []]
    for session in sessions:
        session.run(None, rows)
    for _ in range(max(1, repeats)):
        for index, session in enumerate(sessions):
            start = time.perf_counter()
            session.run(None, rows)
            times[index].append(time.perf_counter() - start)
    return statistics.median(times[0]) / statistics.median(times[1])


def compare_output(name: str, got: np.ndarray, want: np.ndarray) -> OutputProof:
    """Per-row cosine and errors of one output; rows are the first axis."""
    rows = len(want) if want.ndim else 1
    g = got.reshape(rows, -1).astype(np.float64)
    w = want.reshape(rows, -1).astype(np.float64)
    result = OutputProof(name=name, scale=max(1.0, float(np.abs(w).max()) if w.size else 1.0))
    if not w.size:
        return result
    diff = np.abs(g - w)
    result.max_abs_error = float(diff.max())
    result.mean_abs_error = float(diff.mean())
    floor = REL_FLOOR * max(float(np.abs(w).max()), 1e-12)
    result.max_rel_error = float((diff / np.maximum(np.abs(w), floor)).max())
    result.cosine_applies = w.shape[1] > 1
    if result.cosine_applies:
        cosine = row_cosine(g, w)
        order = np.argsort(cosine, kind="stable")
        result.worst_row_cosine = float(cosine[order[0]])
        result.p1_cosine = float(np.percentile(cosine, 1))
        result.mean_cosine = float(cosine.mean())
        result.worst_rows = [int(i) for i in order[:WORST_ROWS]]
    else:
        order = np.argsort(-diff.max(axis=1), kind="stable")
        result.worst_rows = [int(i) for i in order[:WORST_ROWS]]
    return result


def row_cosine(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Cosine of each row pair; two zero rows agree (1), one zero row against a non-zero one does not (0)."""
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    dots = np.einsum("ij,ij->i", got, want)
    both_zero = (np.linalg.norm(got, axis=1) == 0) & (np.linalg.norm(want, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, np.clip(cosine, -1.0, 1.0))


def measure(
    variant: str,
    outputs: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    task: str,
    x: np.ndarray | None,
    y: np.ndarray | None,
) -> Report:
    """The report's numbers (no verdict yet) from a variant's outputs and the reference's."""
    report = Report(variant=variant, num_samples=len(next(iter(reference.values()))) if reference else 0)
    for name, want in reference.items():
        if name not in outputs:
            raise ValueError(f"the variant has no output {name!r}")
        report.outputs.append(compare_output(name, outputs[name], want))
    cosines = [o for o in report.outputs if o.cosine_applies]
    report.max_abs_error = max((o.max_abs_error for o in report.outputs), default=0.0)
    report.mean_abs_error = float(np.mean([o.mean_abs_error for o in report.outputs])) if report.outputs else 0.0
    report.max_rel_error = max((o.max_rel_error for o in report.outputs), default=0.0)
    report.worst_row_cosine = min((o.worst_row_cosine for o in cosines), default=1.0)
    report.p1_cosine = min((o.p1_cosine for o in cosines), default=1.0)
    report.cosine_similarity = float(np.mean([o.mean_cosine for o in cosines])) if cosines else 1.0
    worst = min(cosines, key=lambda o: o.worst_row_cosine) if cosines else max(report.outputs, key=_abs_key)
    report.worst_rows = list(worst.worst_rows)
    first = next(iter(reference))
    if task == "classification":
        got, want = outputs[first], reference[first]
        report.top1_agreement = float((got.argmax(axis=1) == want.argmax(axis=1)).mean())
    report.metric_name, report.metric_value = task_metric(task, outputs[first], x, y)
    _, report.reference_metric_value = task_metric(task, reference[first], x, y)
    return report


def _abs_key(output: OutputProof) -> float:
    return output.max_abs_error / output.scale


def compare(
    variant: str,
    path: Path,
    reference: Mapping[str, np.ndarray],
    feed: Feed,
    y: np.ndarray | None,
    task: str,
    tolerance: Tolerance,
    repeats: int = 30,
    threads: int = 1,
) -> Report:
    """Run the variant on the proof feed and judge it against ``reference`` (the reference's outputs)."""
    session = cpu_session(path, threads)
    outputs = run_batched(session, feed)
    x = next(iter(feed.values())) if task == "vae" else None
    report = measure(variant, outputs, reference, task, x, y)
    report.size_bytes = path.stat().st_size
    report.latency_ms_batch1 = median_latency_ms(session, feed, 1, repeats)
    report.latency_ms_batch32 = median_latency_ms(session, feed, 32, max(5, repeats // 3))
    report.reason = judge(report, tolerance)
    report.accepted = not report.reason
    report.limits = tolerance.as_dict()
    return report


def judge(report: Report, tolerance: Tolerance) -> str:
    """Empty when every limit holds, else each broken limit in words, naming the worst rows."""
    if not all(np.isfinite(v) for v in (report.max_abs_error, report.worst_row_cosine, report.max_rel_error)):
        return "outputs contain NaN or infinity"
    problems = []
    rows = ", ".join(str(r) for r in report.worst_rows)
    if tolerance.min_worst_row_cosine and report.worst_row_cosine < tolerance.min_worst_row_cosine:
        problems.append(
            f"worst-row cosine {report.worst_row_cosine:.4f} < {tolerance.min_worst_row_cosine:.4f} (worst rows {rows})"
        )
    if tolerance.min_p1_cosine and report.p1_cosine < tolerance.min_p1_cosine:
        problems.append(f"p1 cosine {report.p1_cosine:.4f} < {tolerance.min_p1_cosine:.4f}")
    for output in report.outputs:
        if tolerance.max_abs_error and output.max_abs_error > tolerance.max_abs_error * output.scale:
            problems.append(
                f"max abs error of {output.name} {output.max_abs_error:.3g} > {tolerance.max_abs_error:.3g} "
                f"x output scale {output.scale:.3g} (worst rows {', '.join(map(str, output.worst_rows))})"
            )
    if tolerance.max_rel_error and report.max_rel_error > tolerance.max_rel_error:
        problems.append(f"max rel error {report.max_rel_error:.3g} > {tolerance.max_rel_error:.3g}")
    if tolerance.max_metric_drop and report.metric_name not in ("", "none"):
        problems.extend(_metric_problem(report, tolerance.max_metric_drop))
    if tolerance.min_top1_agreement and report.top1_agreement < tolerance.min_top1_agreement:
        problems.append(f"top-1 agreement {report.top1_agreement:.4f} < {tolerance.min_top1_agreement:.4f}")
    return "; ".join(problems)


def _metric_problem(report: Report, limit: float) -> list[str]:
    if report.metric_name == "accuracy":
        drop = report.reference_metric_value - report.metric_value
        if drop > limit + 1e-12:
            return [
                f"accuracy {report.metric_value:.4f} is {drop * 100:.2f} points below the reference "
                f"{report.reference_metric_value:.4f} (limit {limit * 100:.2f})"
            ]
        return []
    base = max(report.reference_metric_value, 1e-12)
    increase = (report.metric_value - report.reference_metric_value) / base
    if increase > limit + 1e-12:
        return [
            f"{report.metric_name} {report.metric_value:.4g} is {increase * 100:.2f}% above the reference "
            f"{report.reference_metric_value:.4g} (limit {limit * 100:.2f}%)"
        ]
    return []
