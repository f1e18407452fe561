"""Property-based fuzzing of inference and registry requests: thousands of generated messages, no
UNKNOWN/INTERNAL status, no crash, no leak of the server's paths or stack; the service stays healthy."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.common.v1 import common_pb2
from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc
from aiaas.registry.v1 import registry_pb2 as reg
from aiaas.registry.v1 import registry_pb2_grpc as reg_grpc
from aiaas.usage.v1 import usage_pb2, usage_pb2_grpc
from tests.integration.robustness.conftest import assert_clean_details, fuzz_settings
from tests.support.processes import ServiceProcess

BAD_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
FUZZ = fuzz_settings(600)

names = st.one_of(
    st.sampled_from(["digits", "", "DIGITS", "digits/../../etc", "..", "a" * 300, "nul\x00l", "tab\tname"]),
    st.text(max_size=40),
)
datatypes = st.one_of(
    st.sampled_from(["FP32", "FP16", "FP64", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "BF16"]),
    st.text(max_size=8),
)
dims = st.lists(st.one_of(st.integers(-3, 70), st.integers(-(2**62), 2**62)), max_size=5)


@st.composite
def infer_requests(draw: st.DrawFn) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(
        model_name=draw(names),
        model_version=draw(st.sampled_from(["", "1", "2", "-1", "latest", "99999999999999999999"])),
        id=draw(st.text(max_size=20)),
    )
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["input", "output", "", "x"])), datatype=draw(datatypes), shape=draw(dims)
        )
        if draw(st.booleans()):
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=200)))
        if draw(st.booleans()):
            tensor.contents.int64_contents.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20)))
        if draw(st.booleans()):
            tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=10), max_size=5)))
    for _ in range(draw(st.integers(0, 3))):
        request.raw_input_contents.append(draw(st.binary(max_size=400)))
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add(name=draw(st.sampled_from(["output", "nope", ""])))
    return request


def test_fuzz_monitoring(inference_standalone: ServiceProcess) -> None:
    channel = grpc.insecure_channel(inference_standalone.address)
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)

    @settings(FUZZ, max_examples=300)
    @given(
        names,
        st.one_of(st.sampled_from(["", "1", "-1"]), st.text(max_size=80)),
        st.booleans(),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50),
    )
    def check(name: str, text: str, feedback: bool, labels: list[int]) -> None:
        try:
            if feedback:
                request = monitoring_pb2.RecordFeedbackRequest(model_name=name, request_id=text, labels=labels)
                stub.RecordFeedback(request, timeout=10)
            else:
                stub.GetDrift(monitoring_pb2.GetDriftRequest(model_name=name, version=text), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() not in BAD_CODES, (exc.code(), exc.details(), name, text)
            assert_clean_details(exc.details(), inference_standalone.home)

    check()
    channel.close()
    assert _healthy(inference_standalone.address)


def _healthy(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_fuzz_model_infer(inference_standalone: ServiceProcess) -> None:
    channel = grpc.insecure_channel(inference_standalone.address)
    stub = oip_grpc.GRPCInferenceServiceStub(channel)

    @FUZZ
    @given(infer_requests())
    def check(request: oip.ModelInferRequest) -> None:
        try:
            stub.ModelInfer(request, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() not in BAD_CODES, (exc.code(), exc.details(), request)
            assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "a bad request must not hang"
            assert_clean_details(exc.details(), inference_standalone.home)

    check()
    channel.close()
    assert inference_standalone.process.poll() is None
    assert _healthy(inference_standalone.address)


@st.composite
def registry_calls(draw: st.DrawFn) -> tuple[str, object]:
    ref = common_pb2.VersionRef(model_name=draw(names))
    if draw(st.booleans()):
        ref.version = draw(st.integers(-(2**63), 2**63 - 1))
    else:
        ref.alias = draw(names)
    choice = draw(st.sampled_from(["CreateModel", "GetVersion", "ListVersions", "SetAlias", "CreateVersion"]))
    if choice == "CreateModel":
        return choice, reg.CreateModelRequest(name=draw(names), description=draw(st.text(max_size=50)))
    if choice == "GetVersion":
        return choice, reg.GetVersionRequest(ref=ref)
    if choice == "ListVersions":
        return choice, reg.ListVersionsRequest(
            model_name=draw(names),
            page_size=draw(st.integers(-(2**31), 2**31 - 1)),
            page_token=draw(st.one_of(st.text(max_size=30), st.sampled_from(["", "0", "-5", "eyJ4IjoxfQ=="]))),
        )
    if choice == "SetAlias":
        return choice, reg.SetAliasRequest(
            model_name=draw(names), alias=draw(names), version=draw(st.integers(-(2**63), 2**63 - 1))
        )
    return choice, reg.CreateVersionRequest(
        model_name=draw(names),
        format=draw(st.integers(0, 7)),  # type: ignore[arg-type]  # unknown numbers on purpose
        variant=draw(st.text(max_size=20)),
        create_model=draw(st.booleans()),
        required_artifacts=draw(st.lists(names, max_size=3)),
    )


def fuzz_calls(
    service: ServiceProcess, stub_type: Any, calls: st.SearchStrategy[tuple[str, object]], fuzz: Any = FUZZ
) -> None:
    """Send each generated (method, request) to ``service``: never UNKNOWN or INTERNAL, never a leak of its
    paths or stack; afterwards the process is up and SERVING."""
    with grpc.insecure_channel(service.address) as channel:
        stub = stub_type(channel)

        @fuzz
        @given(calls)
        def check(call: tuple[str, object]) -> None:
            method, request = call
            try:
                getattr(stub, method)(request, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() not in BAD_CODES, (method, exc.code(), exc.details(), request)
                assert_clean_details(exc.details(), service.home)

        check()
    assert service.process.poll() is None
    assert _healthy(service.address)


def test_fuzz_registry(registry_robust: ServiceProcess) -> None:
    fuzz_calls(registry_robust, reg_grpc.RegistryServiceStub, registry_calls())


@st.composite
def usage_calls(draw: st.DrawFn) -> tuple[str, object]:
    stamp = timestamp_pb2.Timestamp(
        seconds=draw(st.integers(-(2**40), 2**40)), nanos=draw(st.integers(-(2**31), 2**31 - 1))
    )
    if draw(st.booleans()):
        request = usage_pb2.ListUsageRequest(principal=draw(names), model=draw(names))
        if draw(st.booleans()):
            request.since.CopyFrom(stamp)
        return "ListUsage", request
    report = usage_pb2.RecordUsageRequest(source=draw(st.text(max_size=20)))
    for _ in range(draw(st.integers(0, 4))):
        entry = report.entries.add(
            principal=draw(names),
            model=draw(names),
            requests=draw(st.integers(-(2**63), 2**63 - 1)),
            rows=draw(st.integers(-(2**63), 2**63 - 1)),
            compute_seconds=draw(st.floats()),
        )
        if draw(st.booleans()):
            entry.period_start.CopyFrom(stamp)
    return "RecordUsage", report


def test_fuzz_usage(registry_robust: ServiceProcess) -> None:
    fuzz_calls(registry_robust, usage_pb2_grpc.UsageServiceStub, usage_calls(), settings(FUZZ, max_examples=300))
