"""Every validation error, deadlines and the full queue, against real servers.

Each error asserts the exact status code and a meaningful part of the message; after all of them the
server still answers.
"""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import numpy as np
import pytest

from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from tests.support.processes import ServiceProcess

Tensor = pb.ModelInferRequest.InferInputTensor
OK_INPUT = np.ones((1, 64), np.float32).tobytes()


def request(model: str = "mlp", name: str = "input", datatype: str = "FP32", shape=(1, 64), raw=(OK_INPUT,)):
    message = pb.ModelInferRequest(model_name=model, inputs=[Tensor(name=name, datatype=datatype, shape=shape)])
    message.raw_input_contents.extend(raw)
    return message


CASES = [
    ("unknown model", request(model="nope"), grpc.StatusCode.NOT_FOUND, "'nope' is not served"),
    (
        "unknown version",
        pb.ModelInferRequest(model_name="mlp", model_version="9"),
        grpc.StatusCode.NOT_FOUND,
        "version '9'",
    ),
    ("unknown input", request(name="pixels"), grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'pixels'"),
    (
        "missing input",
        pb.ModelInferRequest(model_name="mlp"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "missing input(s) 'input'",
    ),
    ("wrong datatype", request(datatype="FP64", raw=(b"\0" * 512,)), grpc.StatusCode.INVALID_ARGUMENT, "expects FP32"),
    ("not a datatype", request(datatype="FLOAT"), grpc.StatusCode.INVALID_ARGUMENT, "not a V2 datatype"),
    ("wrong rank", request(shape=(64,), raw=(OK_INPUT,)), grpc.StatusCode.INVALID_ARGUMENT, "expects rank 2"),
    (
        "wrong fixed dimension",
        request(shape=(1, 32), raw=(OK_INPUT[:128],)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dimension 1 is 32, the model expects 64",
    ),
    (
        "byte length",
        request(raw=(OK_INPUT[:-4],)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 256 bytes, raw contents hold 252",
    ),
    ("raw count", request(raw=(OK_INPUT, OK_INPUT)), grpc.StatusCode.INVALID_ARGUMENT, "2 entries for 1 inputs"),
    (
        "too many elements",
        request(shape=(70_000_000, 64), raw=(b"",)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "more than the limit",
    ),
    ("negative dimension", request(shape=(-1, 64)), grpc.StatusCode.INVALID_ARGUMENT, "negative dimension"),
    ("zero rows", request(shape=(0, 64), raw=(b"",)), grpc.StatusCode.INVALID_ARGUMENT, "batch size 0"),
    (
        "typed count",
        pb.ModelInferRequest(
            model_name="mlp",
            inputs=[
                Tensor(
                    name="input", datatype="FP32", shape=[1, 64], contents=pb.InferTensorContents(fp32_contents=[1.0])
                )
            ],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 64 elements, fp32_contents holds 1",
    ),
    (
        "fp16 typed",
        pb.ModelInferRequest(model_name="fp16", inputs=[Tensor(name="input", datatype="FP16", shape=[1, 4])]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "send it in raw_input_contents",
    ),
    (
        "truncated BYTES",
        request("bytes", datatype="BYTES", shape=(1, 2), raw=(b"\x09\0\0\0ab",)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "claims 9 bytes",
    ),
    (
        "non-UTF-8 BYTES",
        request("bytes", datatype="BYTES", shape=(1, 2), raw=(b"\x01\0\0\0\xff\x01\0\0\0a",)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not UTF-8",
    ),
    ("unknown output", None, grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'logits'"),
    ("unknown variant", None, grpc.StatusCode.NOT_FOUND, "variant 'int8-dynamic' is not loaded"),
    ("mismatched batch", None, grpc.StatusCode.INVALID_ARGUMENT, "disagree on the batch size"),
]


def _special(name: str) -> pb.ModelInferRequest:
    if name == "unknown output":
        message = request()
        message.outputs.add(name="logits")
        return message
    if name == "unknown variant":
        message = request()
        message.parameters["variant"].string_param = "int8-dynamic"
        return message
    a = np.ones((1, 16), np.int32)
    b = np.ones((2, 16), np.int32)
    return pb.ModelInferRequest(
        model_name="add_sub",
        inputs=[Tensor(name="a", datatype="INT32", shape=[1, 16]), Tensor(name="b", datatype="INT32", shape=[2, 16])],
        raw_input_contents=[a.tobytes(), b.tobytes()],
    )


@pytest.mark.parametrize(("label", "message", "code", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_requests_get_a_clear_status(stub, label, message, code, fragment) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(message if message is not None else _special(label), timeout=10)
    assert caught.value.code() == code, caught.value.details()
    assert fragment in caught.value.details()
    assert "Traceback" not in caught.value.details()


def test_server_still_serves_after_bad_requests(stub) -> None:
    assert stub.ModelInfer(request(), timeout=10).outputs[0].name == "output"


def _slow(rows: int) -> pb.ModelInferRequest:
    data = np.ones((rows, 64), np.float32)
    return request(model="slow", shape=data.shape, raw=(data.tobytes(),))


def _time_of(stub, rows: int) -> float:
    started = time.perf_counter()
    stub.ModelInfer(_slow(rows), timeout=30)
    return time.perf_counter() - started


def test_deadline_passed_in_queue_is_dropped_not_run(narrow: ServiceProcess) -> None:
    with grpc.insecure_channel(narrow.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        rows = 6000
        took = _time_of(stub, rows)
        assert took > 0.1  # the blocker keeps the single instance busy long enough
        stats = lambda: stub.ModelStatistics(pb.ModelStatisticsRequest(name="slow")).model_stats[0]  # noqa: E731
        before = stats().execution_count
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            blocker = pool.submit(stub.ModelInfer, _slow(rows), timeout=30)
            time.sleep(took / 3)  # the blocker is running now; the next request must queue behind it
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_slow(1), timeout=0.01)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            blocker.result()
        time.sleep(0.1)
        # Only the blocker ran: the expired request was dropped from the queue.
        assert stats().execution_count == before + 1


def test_full_queue_answers_resource_exhausted(narrow: ServiceProcess) -> None:
    with grpc.insecure_channel(narrow.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(stub.ModelInfer, _slow(1500), timeout=60) for _ in range(8)]
            outcomes = []
            for future in futures:
                try:
                    future.result()
                    outcomes.append("ok")
                except grpc.RpcError as exc:
                    outcomes.append(exc.code().name)
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                    assert "queue is full (2 requests waiting)" in exc.details()
        assert "RESOURCE_EXHAUSTED" in outcomes and "ok" in outcomes
        assert stub.ModelInfer(_slow(1), timeout=30).outputs
