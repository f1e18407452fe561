"""Reference statistics of an imported model, from the calibration data its importer sends.

Training records ``reference.json`` from its training split; an import has no training split, so the
caller may send representative inputs: for an ONNX file an ``.npz`` (one array per input name, as export's
calibration data), for a Hugging Face folder a list of sentences. The model runs on them here (ONNX
Runtime, or transformers for a folder, as the export proof does), and the same statistics training writes
come out: per-feature histograms of the first input (for strings, the lengths of the texts: see
``monitoring.drift.TEXT_FEATURES``) and, for a classifier (a 2-D first output of more than one column, task
classification or unset; a folder of task sequence-classification), the share of each predicted class.
The inference service scores live traffic against them (``aiaas monitor``); a folder's versions exported
to ONNX find the statistics through their ``source`` tag. No gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from aiaas_services.monitoring.drift import is_text, reference_stats, text_reference_stats
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
    classifier = task in ("", "classification") and output.ndim == 2 and output.shape[1] > 1
    predicted = output.argmax(axis=1) if classifier else None
    classes = int(output.shape[1]) if classifier else 0
    if is_text(first):
        stats = text_reference_stats(first, predicted, classes)
    else:
        stats = reference_stats(first.reshape(rows, -1).astype(np.float64), predicted, classes)
    stats["source"] = "import calibration data"
    return stats, rows


def folder_reference(folder: Path, task: str, max_positions: int, texts: Sequence[str]) -> tuple[dict[str, Any], int]:
    """(reference statistics, sentences used) of a Hugging Face folder on its calibration sentences.

    A classifier runs under transformers with the truncation its ONNX export will have
    (``graph.max_length_of``), so the recorded class shares are those the served graph predicts; an
    embedding model has no classes, only the length histograms. Raises ``FolderRefused`` when
    transformers cannot load the folder.
    """
    texts = list(texts[:MAX_ROWS])
    predicted = None
    classes = 0
    if task != "embedding":
        from aiaas_services.serialization.text import prove
        from aiaas_services.textmodel import graph

        model = graph.load_transformers(folder, task, attention="sdpa")
        max_length = graph.max_length_of(folder, max_positions)
        probabilities = prove.reference_outputs(model, folder, task, texts, max_length)
        predicted = probabilities.argmax(axis=1)
        classes = int(probabilities.shape[1])
    stats = text_reference_stats(texts, predicted, classes)
    stats["source"] = "import calibration sentences"
    return stats, len(texts)
