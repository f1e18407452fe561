"""The served signature of a text model: one BYTES input of UTF-8 strings, outputs by task."""

from __future__ import annotations

from aiaas_services.serialization.pipeline.validate import ModelInfo, TensorInfo

TEXT_INPUT = "text"
EMBEDDING = "embedding"
LOGITS = "logits"
PROBABILITIES = "probabilities"
LABEL = "label"


def of_task(task: str, hidden_size: int, num_labels: int) -> ModelInfo:
    """``text`` [batch] BYTES in; ``embedding`` [batch, hidden] or logits/probabilities/label out
    (opset 0: an HF checkpoint is not a graph yet)."""
    inputs = (TensorInfo(TEXT_INPUT, "BYTES", (-1,)),)
    if task == "embedding":
        outputs: tuple[TensorInfo, ...] = (TensorInfo(EMBEDDING, "FP32", (-1, hidden_size or -1)),)
    else:
        outputs = (
            TensorInfo(LOGITS, "FP32", (-1, num_labels)),
            TensorInfo(PROBABILITIES, "FP32", (-1, num_labels)),
            TensorInfo(LABEL, "BYTES", (-1,)),
        )
    return ModelInfo(0, inputs, outputs)
