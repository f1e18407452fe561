"""BF16 tensors: the codec's raw and JSON forms, and the OrtValue runner that ONNX Runtime needs for them."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from aiaas_services.inference.examples import make_bf16_mlp
from aiaas_services.inference.model import plain_runner
from aiaas_services.inference.ortvalues import needs_ortvalues, ortvalue_runner
from aiaas_services.inference.rest.codec import _from_json, _json_data
from aiaas_services.inference.tensors import ORT_TO_V2, decode_raw, encode_raw, numpy_to_v2
from aiaas_services.runtime.errors import InvalidArgument

BF16 = np.dtype(ml_dtypes.bfloat16)


def test_bf16_raw_and_json_forms_round_trip_exactly() -> None:
    x = np.array([[1.0, -2.5, 3.0e38, 1e-40], [0.1, -0.0, 65504.0, 7.0]], dtype=BF16)
    assert numpy_to_v2(x.dtype) == "BF16" and ORT_TO_V2["tensor(bfloat16)"] == "BF16"
    raw = encode_raw(x, "BF16")
    assert len(raw) == 16 and raw == x.view("<u2").tobytes()
    back = decode_raw(raw, "BF16", [2, 4], "input")
    assert back.dtype == BF16 and back.tobytes() == raw
    with pytest.raises(InvalidArgument, match="needs 16 bytes"):
        decode_raw(raw[:-1], "BF16", [2, 4], "input")
    numbers = _json_data(x, "BF16")  # float32 holds every bfloat16 value exactly
    assert numbers.dtype == np.float32 and numbers.astype(BF16).tobytes() == raw
    assert _from_json(numbers.tolist(), "BF16", (2, 4), "input").tobytes() == raw
    with pytest.raises(InvalidArgument, match="BF16 numbers"):
        _from_json(["a"] * 8, "BF16", (2, 4), "input")


def test_session_run_refuses_bf16_and_the_ortvalue_runner_serves_it(tmp_path: Path) -> None:
    session = ort.InferenceSession(str(make_bf16_mlp(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    assert needs_ortvalues(session)
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(BF16)
    with pytest.raises(Exception, match=r"MLDataType|bfloat16|type"):  # what the OrtValue path exists for
        plain_runner(session)({"input": x})
    runner = ortvalue_runner(session)
    (y,) = runner({"input": x}, ort.RunOptions())
    assert y.dtype == BF16 and y.shape == (3, 10) and np.abs(y.astype(np.float32)).max() > 0
    strided = np.repeat(x, 2, axis=1)[:, ::2]  # a view with strides, the same values
    assert runner({"input": strided})[0].tobytes() == y.tobytes()
    empty = runner({"input": np.empty((0, 64), BF16)})[0]
    assert empty.shape == (0, 10) and empty.dtype == BF16


def test_a_model_mixing_strings_and_bf16_is_refused_with_the_fix(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["so"]), helper.make_node("Identity", ["x"], ["y"])],
        "mixed",
        [
            helper.make_tensor_value_info("s", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [None]),
        ],
        [
            helper.make_tensor_value_info("so", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [None]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "mixed.onnx"))
    session = ort.InferenceSession(str(tmp_path / "mixed.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidArgument, match="cast the bfloat16 tensors"):
        ortvalue_runner(session)
