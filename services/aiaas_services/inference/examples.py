"""Small example models for demos, tests and benchmarks, made here (no model hub).

``mlp`` and ``transformer`` are exported from PyTorch modules with the contract's names (input
``input`` [batch, 64] float32, output ``output``, dynamic batch axis); the protocol fixtures (BYTES,
FP16, several inputs and outputs) are built directly with ``onnx.helper`` since PyTorch cannot export
string tensors. ``bf16`` takes and returns bfloat16 (ONNX Runtime's Python ``run`` cannot; see
inference/ortvalues.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

NUM_FEATURES = 64


def _export(module: torch.nn.Module, path: Path, example: torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    return path


def export_mlp(path: Path, seed: int = 0, hidden: int = 128, classes: int = 10) -> Path:
    """A digits-shaped MLP: [batch, 64] -> logits [batch, classes]."""
    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(NUM_FEATURES, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes),
    )
    return _export(module, path, torch.zeros(2, NUM_FEATURES))


def export_transformer(path: Path, seed: int = 0, d_model: int = 128, layers: int = 4, tokens: int = 16) -> Path:
    """A small transformer encoder over 64 features viewed as ``tokens`` tokens: a few ms per batch-1 run."""
    torch.manual_seed(seed)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = tokens
            self.project = torch.nn.Linear(NUM_FEATURES // tokens, d_model)
            layer = torch.nn.TransformerEncoderLayer(d_model, 4, d_model * 4, batch_first=True, dropout=0.0)
            self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = torch.nn.Linear(d_model, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            steps = x.reshape(x.shape[0], self.tokens, NUM_FEATURES // self.tokens)
            logits: torch.Tensor = self.head(self.encoder(self.project(steps)).mean(dim=1))
            return logits

    return _export(Encoder(), path, torch.zeros(2, NUM_FEATURES))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _one_node(
    path: Path, name: str, op: str, elem_type: int, width: int, constants: Sequence[onnx.TensorProto] = ()
) -> Path:
    """``output = op(input, *constants)``, both [batch, width] of ``elem_type``."""
    graph = helper.make_graph(
        [helper.make_node(op, ["input", *(c.name for c in constants)], ["output"])],
        name,
        [helper.make_tensor_value_info("input", elem_type, ["batch", width])],
        [helper.make_tensor_value_info("output", elem_type, ["batch", width])],
        initializer=list(constants),
    )
    return _save(graph, path)


def make_bytes_identity(path: Path) -> Path:
    """BYTES in, BYTES out (the same strings): [batch, 2] string tensors."""
    return _one_node(path, "bytes_identity", "Identity", TensorProto.STRING, 2)


def make_fp16_double(path: Path) -> Path:
    """FP16 [batch, 4] -> 2 * input."""
    two = helper.make_tensor("two", TensorProto.FLOAT16, [], [2.0])
    return _one_node(path, "fp16_double", "Mul", TensorProto.FLOAT16, 4, [two])


def make_bf16_mlp(path: Path, seed: int = 0, hidden: int = 32, classes: int = 10) -> Path:
    """A digits-shaped MLP with bfloat16 input and logits ([batch, 64] -> [batch, classes], both BF16).

    The layers compute in float32 between two Casts, as a BF16-serving model does on a CPU without
    bfloat16 matrix kernels; its interface is what the BF16 tests exercise.
    """
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((NUM_FEATURES, hidden)) / 8).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) / 4).astype(np.float32)
    b1 = (rng.standard_normal(hidden) / 10).astype(np.float32)
    weights = {"w1": w1, "b1": b1, "w2": w2}
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h"]),
            helper.make_node("MatMul", ["h", "w2"], ["logits"]),
            helper.make_node("Cast", ["logits"], ["output"], to=TensorProto.BFLOAT16),
        ],
        "bf16_mlp",
        [helper.make_tensor_value_info("input", TensorProto.BFLOAT16, ["batch", NUM_FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.BFLOAT16, ["batch", classes])],
        initializer=[
            helper.make_tensor(name, TensorProto.FLOAT, list(value.shape), value.reshape(-1).tolist())
            for name, value in weights.items()
        ],
    )
    return _save(graph, path)


def make_add_sub(path: Path, datatype: int = TensorProto.INT32) -> Path:
    """Two inputs, two outputs (Triton's classic "simple" model): sum = a + b, difference = a - b, [batch, 16]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["difference"])],
        "add_sub",
        [
            helper.make_tensor_value_info("a", datatype, ["batch", 16]),
            helper.make_tensor_value_info("b", datatype, ["batch", 16]),
        ],
        [
            helper.make_tensor_value_info("sum", datatype, ["batch", 16]),
            helper.make_tensor_value_info("difference", datatype, ["batch", 16]),
        ],
    )
    return _save(graph, path)


def make_bool_not(path: Path) -> Path:
    """BOOL [batch, 3] -> logical not."""
    return _one_node(path, "bool_not", "Not", TensorProto.BOOL, 3)


def make_slow(path: Path, loops: int = 200) -> Path:
    """A deliberately slow float model ([batch, 64] -> [batch, 64]): a chain of MatMuls, for queue tests."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    nodes = []
    previous = "input"
    for i in range(loops):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
        previous = f"t{i}"
    nodes.append(helper.make_node("Identity", [previous], ["output"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 64])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [64, 64], weight.reshape(-1).tolist())],
    )
    return _save(graph, path)


def build_repository(root: Path, names: tuple[str, ...] = ("mlp", "bytes", "fp16", "add_sub", "bool")) -> Path:
    """A local model repository ``<root>/<name>/1/model.onnx`` with the chosen example models."""
    makers: dict[str, Callable[[Path], Path]] = {
        "mlp": export_mlp,
        "transformer": export_transformer,
        "bytes": make_bytes_identity,
        "fp16": make_fp16_double,
        "bf16": make_bf16_mlp,
        "add_sub": make_add_sub,
        "bool": make_bool_not,
        "slow": make_slow,
    }
    for name in names:
        makers[name](root / name / "1" / "model.onnx")
    return root
