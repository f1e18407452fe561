"""What a proof runs on, per source: the checkpoint's held-out split, an uploaded ``.npz`` (one array per
input name), or, for an imported model with no data, generated inputs (FP32/FP16 parity only).

Uploaded rows serve both purposes: INT8 calibrates on the first half (at most ``num_samples`` rows) and
the proof runs on every row, so the rows a report names are rows of the uploaded file.
"""

from __future__ import annotations

import numpy as np

from aiaas_services.serialization.pipeline import inputs
from aiaas_services.serialization.pipeline.run import ProofData

LABELLED_TASKS = ("classification", "regression")


def calibration_rows(rows: int, num_samples: int) -> int:
    """Rows of an upload used for calibration: the first half (all of a small upload), capped."""
    half = rows // 2 if rows >= 16 else rows
    return max(1, min(half, num_samples) if num_samples > 0 else half)


def from_upload(
    arrays: dict[str, np.ndarray], specs: list[inputs.InputSpec], task: str, num_samples: int, what: str
) -> ProofData:
    """An uploaded .npz checked against the model's inputs (raises inputs.DataMismatch naming the input)."""
    feed = inputs.match(arrays, specs, what)
    y = inputs.labels_of(arrays)
    rows = len(next(iter(feed.values())))
    if y is not None and len(y) != rows:
        raise inputs.DataMismatch(f"{what}: 'y' has {len(y)} rows, the inputs have {rows}")
    if y is None and task in LABELLED_TASKS:
        task = ""  # no labels: errors, cosines and agreement only
    cut = calibration_rows(rows, num_samples)
    calibration = {name: array[:cut] for name, array in feed.items()}
    return ProofData(calibration, feed, y, task, True, f"{what} ({rows} rows; calibration on the first {cut})")


def generated(specs: list[inputs.InputSpec], task: str) -> ProofData:
    """Inputs that respect each input's type and range; not representative (INT8 is not proven on them)."""
    feed = inputs.generate(specs)
    source = "generated inputs (no data uploaded): " + ", ".join(s.describe() for s in specs)
    return ProofData({}, feed, None, "" if task in LABELLED_TASKS else task, False, source)


def from_split(
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    task: str,
    upload: dict[str, np.ndarray] | None,
    num_features: int,
    what: str,
) -> ProofData:
    """A checkpoint's held-out split (proof) and training split (calibration, unless data was uploaded)."""
    name = "input"
    calibration = {name: x_train.astype(np.float32)}
    if upload is not None:
        spec = inputs.InputSpec(name, np.float32, ("batch", num_features))
        calibration = inputs.match(upload, [spec], what)
    return ProofData(calibration, {name: x_test.astype(np.float32)}, y_test, task, True, "held-out split")
