"""Proof that a variant is right: compare its outputs on held-out data with the reference's.

Errors are in output units (logits, target units, or raw features for the VAE). A tolerance on the
largest absolute error is scaled by ``max(1, max|reference|)``, so one default fits logits near 10 and
regression targets near 300 alike; the report holds the unscaled numbers.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

# Defaults per variant; a request's VariantTolerance overrides field by field (0 = keep the default).
DEFAULT_MAX_ABS_ERROR = {"fp32": 1e-4, "fp16": 1e-2, "int8-dynamic": 0.0, "int8-static": 0.0}  # 0 = no limit
DEFAULT_MAX_METRIC_DROP = {"fp32": 0.001, "fp16": 0.005, "int8-dynamic": 0.01, "int8-static": 0.01}
# For error metrics (MSE) the "drop" is the relative increase, and INT8 may lose a little more there.
DEFAULT_MAX_ERROR_METRIC_INCREASE = {"fp32": 0.001, "fp16": 0.01, "int8-dynamic": 0.10, "int8-static": 0.10}


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Acceptance limits of one variant (0 disables a limit)."""

    max_abs_error: float = 0.0
    max_metric_drop: float = 0.0
    min_top1_agreement: float = 0.0


def default_tolerance(variant: str, task: str) -> Tolerance:
    drop = DEFAULT_MAX_METRIC_DROP if task == "classification" else DEFAULT_MAX_ERROR_METRIC_INCREASE
    return Tolerance(max_abs_error=DEFAULT_MAX_ABS_ERROR.get(variant, 0.0), max_metric_drop=drop.get(variant, 0.01))


def merge_tolerance(default: Tolerance, override: Tolerance | None) -> Tolerance:
    """Fields set (non-zero) in the override win."""
    if override is None:
        return default
    return Tolerance(
        max_abs_error=override.max_abs_error or default.max_abs_error,
        max_metric_drop=override.max_metric_drop or default.max_metric_drop,
        min_top1_agreement=override.min_top1_agreement or default.min_top1_agreement,
    )


@dataclasses.dataclass
class Report:
    """The numbers of one variant's proof (mirrors the VariantReport message)."""

    variant: str
    accepted: bool = False
    reason: str = ""
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0
    cosine_similarity: float = 0.0
    top1_agreement: float = 0.0
    metric_name: str = ""
    metric_value: float = 0.0
    reference_metric_value: float = 0.0
    size_bytes: int = 0
    latency_ms_batch1: float = 0.0
    latency_ms_batch32: float = 0.0
    preferred_provider: str = ""
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    num_samples: int = 0

    def metrics(self) -> dict[str, float]:
        """The numbers as registry version metrics."""
        result = {
            "max_abs_error": self.max_abs_error,
            "mean_abs_error": self.mean_abs_error,
            "cosine_similarity": self.cosine_similarity,
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


def task_metric(task: str, outputs: np.ndarray, x: np.ndarray, y: np.ndarray | None) -> tuple[str, float]:
    """(name, value): accuracy for classification, MSE for regression, reconstruction MSE for the VAE."""
    if task == "classification" and y is not None:
        return "accuracy", float((outputs.argmax(axis=1) == y.reshape(-1)).mean())
    if task == "regression" and y is not None:
        return "mse", float(np.mean((outputs.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2))
    if task == "vae":
        return "reconstruction_mse", float(np.mean((outputs - x) ** 2))
    return "none", 0.0


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with full optimization, as the inference service would build it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batched(session: ort.InferenceSession, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Outputs for all rows of x, a batch at a time."""
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float64)


def median_latency_ms(session: ort.InferenceSession, x: np.ndarray, batch: int, repeats: int) -> float:
    """Median wall time of one ``run`` at ``batch`` rows (x is tiled when it has fewer)."""
    rows = np.resize(x, (batch, x.shape[1])).astype(np.float32)
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: rows})
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        session.run(None, {name: rows})
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def compare(
    variant: str,
    path: Path,
    reference: np.ndarray,
    x: np.ndarray,
    y: np.ndarray | None,
    task: str,
    tolerance: Tolerance,
    repeats: int = 30,
    threads: int = 1,
) -> Report:
    """Run the variant on ``x`` and judge it against ``reference`` (the reference model's outputs)."""
    session = cpu_session(path, threads)
    outputs = run_batched(session, x.astype(np.float32))
    reference = reference.astype(np.float64).reshape(outputs.shape)
    diff = np.abs(outputs - reference)
    flat_out, flat_ref = outputs.reshape(-1), reference.reshape(-1)
    denom = float(np.linalg.norm(flat_out) * np.linalg.norm(flat_ref))
    report = Report(variant=variant, num_samples=len(x))
    report.max_abs_error = float(diff.max()) if diff.size else 0.0
    report.mean_abs_error = float(diff.mean()) if diff.size else 0.0
    report.cosine_similarity = float(flat_out @ flat_ref / denom) if denom > 0 else 1.0
    if task == "classification":
        report.top1_agreement = float((outputs.argmax(axis=1) == reference.argmax(axis=1)).mean())
    report.metric_name, report.metric_value = task_metric(task, outputs, x, y)
    _, report.reference_metric_value = task_metric(task, reference, x, y)
    report.size_bytes = path.stat().st_size
    report.latency_ms_batch1 = median_latency_ms(session, x, 1, repeats)
    report.latency_ms_batch32 = median_latency_ms(session, x, 32, max(5, repeats // 3))
    report.reason = judge(report, reference, tolerance)
    report.accepted = not report.reason
    return report


def judge(report: Report, reference: np.ndarray, tolerance: Tolerance) -> str:
    """Empty when every limit holds, else each broken limit in words (becomes status_reason)."""
    problems = []
    if not np.isfinite(report.max_abs_error):
        return "outputs contain NaN or infinity"
    scale = max(1.0, float(np.abs(reference).max()) if reference.size else 1.0)
    if tolerance.max_abs_error and report.max_abs_error > tolerance.max_abs_error * scale:
        problems.append(
            f"max abs error {report.max_abs_error:.3g} > {tolerance.max_abs_error:.3g} x output scale {scale:.3g}"
        )
    if tolerance.max_metric_drop and report.metric_name not in ("", "none"):
        if report.metric_name == "accuracy":
            drop = report.reference_metric_value - report.metric_value
            if drop > tolerance.max_metric_drop + 1e-12:
                problems.append(
                    f"accuracy {report.metric_value:.4f} is {drop * 100:.2f} points below the reference "
                    f"{report.reference_metric_value:.4f} (limit {tolerance.max_metric_drop * 100:.2f})"
                )
        else:
            base = max(report.reference_metric_value, 1e-12)
            increase = (report.metric_value - report.reference_metric_value) / base
            if increase > tolerance.max_metric_drop + 1e-12:
                problems.append(
                    f"{report.metric_name} {report.metric_value:.4g} is {increase * 100:.2f}% above the reference "
                    f"{report.reference_metric_value:.4g} (limit {tolerance.max_metric_drop * 100:.2f}%)"
                )
    if tolerance.min_top1_agreement and report.top1_agreement < tolerance.min_top1_agreement:
        problems.append(f"top-1 agreement {report.top1_agreement:.4f} < {tolerance.min_top1_agreement:.4f}")
    return "; ".join(problems)
