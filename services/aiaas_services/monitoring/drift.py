"""Drift scores: how far live inputs and predictions have moved from the training data.

Training records *reference statistics* with each checkpoint (``reference.json``): per input feature, the
interior quantile edges of its training values (10 bins) and the share of training rows in each bin, and
the share of each predicted class. A live window is binned on the same edges and compared with the
Population Stability Index, PSI = sum((live - ref) * ln(live / ref)) over bins.

A text model's input is strings, which have no histograms of their own: its reference (and its live
window) describe each row by ``TEXT_FEATURES``, the length of its text in characters and in words
(``text_features``), so a shift in what users send (much longer or shorter texts) shows as length PSI,
and a shift in what the model answers as prediction PSI.

Reading PSI (the usual rule of thumb): below 0.1 no real shift, 0.1-0.2 a moderate one, above
``PSI_THRESHOLD`` = 0.2 the feature has drifted. A window needs ``MIN_ROWS`` rows before its scores mean
much (sampling noise alone: held-out digits rows score at most ~0.06 with 360 rows, ~0.18 with 100).
Numpy only; no gRPC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 10
PSI_THRESHOLD = 0.2
MIN_ROWS = 200
EPSILON = 1e-4
FORMAT = 1


TEXT_FEATURES = ("characters", "words")


def text_features(values: Any) -> np.ndarray:
    """Rows x ``TEXT_FEATURES`` of a text input (str or UTF-8 bytes; the first string of each row)."""
    column = np.asarray(values, dtype=object)
    column = column.reshape(len(column), -1)[:, 0] if column.size else column.reshape(-1)
    out = np.zeros((len(column), len(TEXT_FEATURES)), dtype=np.float64)
    for i, value in enumerate(column):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
        out[i] = (len(text), len(text.split()))
    return out


def is_text(values: np.ndarray) -> bool:
    """Whether an input array holds strings (a text model's input) rather than numbers."""
    return values.dtype.kind in "OSU"


def _edges(column: np.ndarray, bins: int) -> np.ndarray:
    edges = np.quantile(column.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(edges)


def shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of values in each bin that ``edges`` (sorted interior edges) delimit."""
    counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def psi(reference: np.ndarray, live: np.ndarray) -> float:
    """Population Stability Index of two share vectors (empty bins count as ``EPSILON``)."""
    ref = np.clip(np.asarray(reference, dtype=np.float64), EPSILON, None)
    now = np.clip(np.asarray(live, dtype=np.float64), EPSILON, None)
    return float(np.sum((now - ref) * np.log(now / ref)))


def reference_stats(
    inputs: np.ndarray, predicted: np.ndarray | None, num_classes: int, bins: int = BINS
) -> dict[str, Any]:
    """Reference statistics of a training set's inputs (rows x features) and predicted classes."""
    x = np.asarray(inputs)
    x = x if x.ndim == 2 else x.reshape(len(x), -1)
    features = []
    for j in range(x.shape[1]):
        edges = _edges(x[:, j], bins)
        features.append({"edges": edges.tolist(), "shares": shares(x[:, j], edges).tolist()})
    stats: dict[str, Any] = {"format": FORMAT, "rows": int(x.shape[0]), "features": features, "bins": bins}
    if predicted is not None and num_classes > 0:
        counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)[:num_classes]
        stats["classes"] = (counts / max(1, counts.sum())).tolist()
    return stats


def text_reference_stats(
    texts: Any, predicted: np.ndarray | None, num_classes: int, bins: int = BINS
) -> dict[str, Any]:
    """Reference statistics of a text model's representative inputs: ``TEXT_FEATURES`` histograms (named
    in ``feature_names``) and the predicted classes' shares."""
    stats = reference_stats(text_features(texts), predicted, num_classes, bins)
    stats["input"] = "text"
    stats["feature_names"] = list(TEXT_FEATURES)
    return stats


class Reference:
    """Parsed reference statistics, ready to score windows."""

    def __init__(self, stats: dict[str, Any]) -> None:
        if stats.get("format") != FORMAT or not isinstance(stats.get("features"), list):
            raise ValueError("not a reference.json of format 1")
        self.edges = [np.asarray(f["edges"], dtype=np.float64) for f in stats["features"]]
        self.shares = [np.asarray(f["shares"], dtype=np.float64) for f in stats["features"]]
        if any(len(s) != len(e) + 1 for s, e in zip(self.shares, self.edges, strict=True)):
            raise ValueError("reference.json: each feature needs one more share than edges")
        names = stats.get("feature_names")
        self.feature_names = [str(n) for n in names] if isinstance(names, list) else []
        classes = stats.get("classes")
        self.classes = np.asarray(classes, dtype=np.float64) if classes else None
        self._widest = max((len(e) for e in self.edges), default=0)
        self._padded_shares = np.zeros((self.num_features, self._widest + 1))  # empty columns: PSI term 0
        for j, ref in enumerate(self.shares):
            self._padded_shares[j, : len(ref)] = ref

    @property
    def num_features(self) -> int:
        return len(self.edges)

    @property
    def bins(self) -> int:
        """Columns of ``bin_counts`` (the most bins any feature has)."""
        return self._widest + 1

    @property
    def num_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)

    def feature_psi(self, window: np.ndarray) -> list[float]:
        """PSI of each feature of a window (rows x features)."""
        return self.psi_of_counts(self.bin_counts(window))

    def bin_counts(self, window: np.ndarray) -> np.ndarray:
        """How many rows of a window (rows x features) fall in each bin: features x ``bins`` ints.

        Counts (not shares) add up across windows, which is how the workers of one service score their
        traffic together. A feature with fewer edges leaves its last columns empty.
        """
        x = np.asarray(window)
        x = x if x.ndim == 2 else x.reshape(len(x), -1)
        if x.shape[1] != self.num_features:
            raise ValueError(f"the window has {x.shape[1]} features, the reference {self.num_features}")
        counts = np.zeros((self.num_features, self.bins), dtype=np.int64)
        columns = np.ascontiguousarray(x.T)  # one binary search per value and feature, feature by feature
        for j, edges in enumerate(self.edges):
            bins = len(edges) + 1
            counts[j, :bins] = np.bincount(np.searchsorted(edges, columns[j], side="right"), minlength=bins)
        return counts

    def psi_of_counts(self, counts: np.ndarray) -> list[float]:
        """PSI of each feature from bin counts (``bin_counts``, or several windows' counts summed)."""
        counts = np.asarray(counts, dtype=np.float64)
        rows = counts.sum(axis=1, keepdims=True)
        live = np.clip(np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0), EPSILON, None)
        ref = np.clip(self._padded_shares, EPSILON, None)
        return [float(v) for v in np.sum((live - ref) * np.log(live / ref), axis=1)]

    def class_counts(self, predicted: np.ndarray) -> np.ndarray | None:
        """Rows predicted as each class (None without reference classes)."""
        if self.classes is None:
            return None
        clipped = np.clip(np.asarray(predicted, dtype=np.int64), 0, len(self.classes) - 1)
        return np.bincount(clipped, minlength=len(self.classes))

    def prediction_psi_of_counts(self, counts: np.ndarray | None) -> float | None:
        """PSI of the predicted-class distribution from class counts (None without classes or rows)."""
        if self.classes is None or counts is None or np.sum(counts) == 0:
            return None
        counts = np.asarray(counts, dtype=np.float64)
        return psi(self.classes, counts / counts.sum())

    def prediction_psi(self, predicted: np.ndarray) -> float | None:
        """PSI of the predicted-class distribution (None without reference classes or predictions)."""
        if self.classes is None or len(predicted) == 0:
            return None
        counts = np.bincount(np.clip(predicted, 0, len(self.classes) - 1), minlength=len(self.classes))
        return psi(self.classes, counts / counts.sum())
