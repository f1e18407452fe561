"""A deliberately slow ONNX model: a long chain of MatMul+Tanh nodes over one shared weight.

ONNX Runtime checks ``RunOptions.terminate`` between nodes, so a long chain of moderately slow nodes is
a run that can be stopped part-way (one big node could not be).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 256


def export_slow_model(path: Path, nodes: int = 800) -> None:
    """``input`` [SIDE, SIDE] float -> ``output`` [SIDE, SIDE]: ``nodes`` times (MatMul, Tanh)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((SIDE, SIDE)) / SIDE).astype(np.float32), "w")
    graph_nodes = []
    previous = "input"
    for i in range(nodes):
        graph_nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{i}"]))
        out = "output" if i == nodes - 1 else f"t{i}"
        graph_nodes.append(helper.make_node("Tanh", [f"m{i}"], [out]))
        previous = out
    graph = helper.make_graph(
        graph_nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [SIDE, SIDE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [SIDE, SIDE])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
