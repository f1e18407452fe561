"""What every benchmark suite shares: the record type, medians and machine facts."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Record:
    """One measured figure; ratios of two things measured side by side are what we track."""

    name: str
    value: float
    unit: str
    better: str  # "higher" or "lower"
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def median(values: Sequence[float]) -> float:
    """Median of repeats (robust on noisy shared machines)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[index])


def machine() -> dict[str, Any]:
    """CPU count, GPU and ONNX Runtime facts for the results file."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "gpu": None}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["providers"] = ort.get_available_providers()
    except ImportError:  # pragma: no cover
        pass
    return info
