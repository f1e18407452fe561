"""The served signature of a text model: one BYTES input of UTF-8 strings, outputs by task."""

from __future__ import annotations

from aiaas.common.v1 import common_pb2

TEXT_INPUT = "text"
EMBEDDING = "embedding"
LOGITS = "logits"
PROBABILITIES = "probabilities"
LABEL = "label"


def of_task(task: str, hidden_size: int, num_labels: int) -> common_pb2.Signature:
    """``text`` [batch] BYTES in; ``embedding`` [batch, hidden] or logits/probabilities/label out."""
    spec = common_pb2.TensorSpec
    inputs = [spec(name=TEXT_INPUT, datatype="BYTES", shape=[-1])]
    if task == "embedding":
        outputs = [spec(name=EMBEDDING, datatype="FP32", shape=[-1, hidden_size or -1])]
    else:
        outputs = [
            spec(name=LOGITS, datatype="FP32", shape=[-1, num_labels]),
            spec(name=PROBABILITIES, datatype="FP32", shape=[-1, num_labels]),
            spec(name=LABEL, datatype="BYTES", shape=[-1]),
        ]
    return common_pb2.Signature(inputs=inputs, outputs=outputs)
