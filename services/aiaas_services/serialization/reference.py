"""Reference statistics of an imported ONNX model, from the calibration data its importer sends.

Training records ``reference.json`` from its training split; an import has no training split, so the
caller may send representative inputs (an ``.npz``, one array per input name, as export's calibration
data). The model runs on them here, and the same statistics training writes come out: per-feature
histograms of the first input (none when it holds strings, as a text model's does) and, for a classifier
(a 2-D first output of more than one column, task classification or unset), the share of each predicted
class. The inference service scores live traffic against them (``aiaas monitor``). No gRPC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from aiaas_services.monitoring.drift import reference_stats
from aiaas_services.runtime.custom_ops import register
from aiaas_services.serialization.pipeline import inputs

MAX_ROWS = 10_000  # rows used (the first ones); enough for 10-bin quantiles, bounded work
BATCH = 256


def import_reference(model: Path, payload: bytes, task: str) -> tuple[dict[str, Any], int]:
    """(reference statistics, rows used) for ``model`` from the calibration ``.npz`` bytes.

    Raises ``inputs.DataMismatch`` naming the input when the data does not fit the model.
    """
    specs = inputs.signature_of(model)
    feed = inputs.match(inputs.read_npz(payload, "calibration data"), specs, "calibration data")
    rows = min(MAX_ROWS, len(next(iter(feed.values()))))
    feed = {name: array[:rows] for name, array in feed.items()}
    options = register(ort.SessionOptions())  # a model with the tokenizer inside needs the custom ops
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    first_output = []
    for start in range(0, rows, BATCH):
        batch = {name: array[start : start + BATCH] for name, array in feed.items()}
        try:
            first_output.append(np.asarray(session.run(None, batch)[0]))
        except Exception as exc:  # ORT raises its own types; the caller maps DataMismatch to INVALID_ARGUMENT
            reason = str(exc).replace(str(model.parent), "<upload>")[:800]
            raise inputs.DataMismatch(f"the model cannot run on the calibration data: {reason}") from exc
    output: np.ndarray = np.concatenate(first_output) if first_output else np.zeros((0, 0))
    first = feed[specs[0].name]
    features = first.reshape(rows, -1) if first.dtype.kind in "fiub" else np.zeros((rows, 0), np.float32)
    classifier = task in ("", "classification") and output.ndim == 2 and output.shape[1] > 1
    predicted = output.argmax(axis=1) if classifier else None
    stats = reference_stats(features.astype(np.float64), predicted, int(output.shape[1]) if classifier else 0)
    stats["source"] = "import calibration data"
    return stats, rows
