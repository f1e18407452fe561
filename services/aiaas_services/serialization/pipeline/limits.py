"""The proof's default limits, one row per variant kind and task; a request overrides them field by field.

Why these numbers:
- fp32 is the same graph after export and optimization: anything beyond float rounding is a bug.
- fp16 keeps ~3 decimal digits; a worst-row cosine of 0.999 is what a correct half-precision graph
  reaches on real data, and the absolute error stays within 1% of the output's scale.
- int8 is judged by what it is used for: a classifier must keep its decisions (top-1 agreement ≥ 0.99
  and accuracy within 1 point); an embedding or an imported model with no task must keep every row's
  direction (worst-row cosine ≥ 0.98, p1 ≥ 0.99: nearest-neighbour rankings survive that); a regressor
  keeps its MSE within 10%; the VAE's reconstructions keep their direction (0.95) and MSE within 10%.
- a structurally pruned model (hidden units removed) is a different function of its inputs, held against the
  unpruned original: a classifier keeps its accuracy within 1 point and ≥ 0.95 of its decisions (a pruned
  model may fix some of the original's mistakes, so INT8's 0.99 would refuse improvements), a regressor its
  MSE within 10%, a VAE its reconstructions' direction (0.95).
Absolute errors are in units of ``max(1, max|reference|)`` of each output, so one limit fits logits near
10 and regression targets near 300 alike.
"""

from __future__ import annotations

import dataclasses

TASK_GROUPS = ("classification", "regression", "vae", "none")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Acceptance limits of one variant (0 disables a limit)."""

    max_abs_error: float = 0.0
    max_metric_drop: float = 0.0
    min_top1_agreement: float = 0.0
    min_worst_row_cosine: float = 0.0
    min_p1_cosine: float = 0.0
    max_rel_error: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The limits in force (non-zero ones), as the report shows them."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


# (variant kind, task group) -> limits. Every cell has at least one limit that reads every row.
DEFAULTS: dict[tuple[str, str], Tolerance] = {
    ("fp32", "classification"): Tolerance(1e-4, 0.001, 0.99, 0.9999),
    ("fp32", "regression"): Tolerance(1e-4, 0.001),
    ("fp32", "vae"): Tolerance(1e-4, 0.001, 0.0, 0.9999),
    ("fp32", "none"): Tolerance(1e-4, 0.0, 0.0, 0.9999),
    ("fp16", "classification"): Tolerance(1e-2, 0.005, 0.99, 0.999),
    ("fp16", "regression"): Tolerance(1e-2, 0.01),
    ("fp16", "vae"): Tolerance(1e-2, 0.01, 0.0, 0.999),
    ("fp16", "none"): Tolerance(1e-2, 0.0, 0.0, 0.999),
    ("int8", "classification"): Tolerance(0.0, 0.01, 0.99),
    ("int8", "regression"): Tolerance(0.0, 0.10),
    ("int8", "vae"): Tolerance(0.0, 0.10, 0.0, 0.95),
    ("int8", "none"): Tolerance(0.1, 0.0, 0.0, 0.98, 0.99),
    ("pruned", "classification"): Tolerance(0.0, 0.01, 0.95),
    ("pruned", "regression"): Tolerance(0.0, 0.10),
    ("pruned", "vae"): Tolerance(0.0, 0.10, 0.0, 0.95),
    ("pruned", "none"): Tolerance(0.1, 0.0, 0.0, 0.98, 0.99),
}


def kind_of(variant: str) -> str:
    """fp32, fp16 or int8 (both INT8 variants share limits)."""
    return "int8" if variant.startswith("int8") else variant


def task_group(task: str) -> str:
    """The limits row for a task; anything else (embeddings, imported models without a task) is "none"."""
    return task if task in TASK_GROUPS else "none"


def default_tolerance(variant: str, task: str) -> Tolerance:
    return DEFAULTS.get((kind_of(variant), task_group(task)), DEFAULTS[("int8", "none")])


def merge_tolerance(default: Tolerance, override: Tolerance | None) -> Tolerance:
    """Fields set (non-zero) in the override win."""
    if override is None:
        return default
    merged = {
        field.name: getattr(override, field.name) or getattr(default, field.name)
        for field in dataclasses.fields(Tolerance)
    }
    return Tolerance(**merged)


def table() -> list[tuple[str, str, Tolerance]]:
    """The defaults in README order."""
    return [(kind, group, DEFAULTS[(kind, group)]) for kind in ("fp32", "fp16", "int8") for group in TASK_GROUPS]
