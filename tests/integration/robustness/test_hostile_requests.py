"""Hostile requests to every service, table-driven: each gets the right status code and a message that says
what to fix, nothing leaks, and every service is still healthy afterwards."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.common.v1 import common_pb2 as c
from aiaas.explain.v1 import explain_pb2 as e
from aiaas.explain.v1 import explain_pb2_grpc as eg
from aiaas.monitoring.v1 import monitoring_pb2 as m
from aiaas.monitoring.v1 import monitoring_pb2_grpc as mg
from aiaas.oip.v2 import grpc_service_pb2 as o
from aiaas.oip.v2 import grpc_service_pb2_grpc as og
from aiaas.registry.v1 import registry_pb2 as r
from aiaas.registry.v1 import registry_pb2_grpc as rg
from aiaas.serialization.v1 import serialization_pb2 as s
from aiaas.serialization.v1 import serialization_pb2_grpc as sg
from aiaas.training.v1 import training_pb2 as t
from aiaas.training.v1 import training_pb2_grpc as tg
from aiaas.usage.v1 import usage_pb2 as u
from aiaas.usage.v1 import usage_pb2_grpc as ug
from aiaas_services.suite import DEFAULT_PORTS, Suite
from tests.integration.robustness.conftest import assert_clean_details
from tests.integration.robustness.raw_bytes import deep_nesting, unary_raw
from tests.support.processes import ServiceProcess

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DATA_LOSS = grpc.StatusCode.DATA_LOSS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
UNPARSEABLE = "could not be parsed"
GARBAGE = bytes(range(256)) * 3  # not a protobuf message: wire types 6 and 7 do not exist

MLP = t.Architecture(mlp=t.MlpSpec(hidden_sizes=[8]))
DIGITS = t.DataSpec(sklearn="digits")


def spec(**overrides: Any) -> t.StartTrainingJobRequest:
    """A valid training request with some fields replaced."""
    fields: dict[str, Any] = {"model_name": "m", "architecture": MLP, "data": DIGITS, "epochs": 1}
    fields.update(overrides)
    return t.StartTrainingJobRequest(spec=t.TrainingSpec(**fields))


def arch(**kind: Any) -> t.Architecture:
    return t.Architecture(**kind)


def load_refused(model: str, message: str) -> tuple[str, str, Any, grpc.StatusCode, str]:
    """RepositoryModelLoad of a broken repository model: FAILED_PRECONDITION saying ``message``."""
    request = o.RepositoryModelLoadRequest(model_name=model)
    return ("inference-repo", "RepositoryModelLoad", request, PRECONDITION, message)


def usage_of(**fields: Any) -> u.RecordUsageRequest:
    """A usage report of one entry."""
    return u.RecordUsageRequest(entries=[u.UsageEntry(**fields)])


# (service, method, request, expected code, a fragment the message must contain)
CASES: list[tuple[str, str, Any, grpc.StatusCode, str]] = [
    # training
    ("training", "StartTrainingJob", t.StartTrainingJobRequest(), INVALID, "model_name"),
    ("training", "StartTrainingJob", spec(architecture=None), INVALID, "architecture"),
    ("training", "StartTrainingJob", spec(data=t.DataSpec(sklearn="mnist")), INVALID, "mnist"),
    ("training", "StartTrainingJob", spec(model_name="../etc/passwd"), INVALID, "name"),
    ("training", "StartTrainingJob", spec(model_name="bad\x00name"), INVALID, "name"),
    ("training", "StartTrainingJob", spec(epochs=-3), INVALID, "epochs"),
    ("training", "StartTrainingJob", spec(batch_size=2**31 - 1), INVALID, "batch_size"),
    ("training", "StartTrainingJob", spec(architecture=arch(mlp=t.MlpSpec(hidden_sizes=[0]))), INVALID, "hidden"),
    (
        "training",
        "StartTrainingJob",
        spec(architecture=arch(mlp=t.MlpSpec(hidden_sizes=[4], dropout=2))),
        INVALID,
        "dropout",
    ),
    (
        "training",
        "StartTrainingJob",
        spec(architecture=arch(rnn=t.RnnSpec(hidden_size=4, num_layers=1, sequence_length=7))),
        INVALID,
        "sequence_length",
    ),
    (
        "training",
        "StartTrainingJob",
        spec(architecture=arch(cnn=t.CnnSpec(channels=1, height=5, width=5, conv_channels=[4]))),
        INVALID,
        "64 features",
    ),
    ("training", "StartTrainingJob", spec(device="tpu"), INVALID, "device"),
    ("training", "StartTrainingJob", spec(world_size=1000), INVALID, "world_size"),
    ("training", "StartTrainingJob", spec(export=c.ExportOptions(variants=["int4"])), INVALID, "int4"),
    ("training", "GetJob", t.GetJobRequest(job_id="nope"), NOT_FOUND, "nope"),
    ("training", "CancelJob", t.CancelJobRequest(job_id="../x"), NOT_FOUND, "does not exist"),
    ("training", "ListJobs", t.ListJobsRequest(page_token="garbage!"), INVALID, "page_token"),
    ("training", "ListJobs", t.ListJobsRequest(page_size=-1), INVALID, "page_size"),
    # serialization
    ("serialization", "StartExportJob", s.StartExportJobRequest(), INVALID, "model_name"),
    (
        "serialization",
        "StartExportJob",
        s.StartExportJobRequest(
            source=c.VersionRef(model_name="nope", version=1), options=c.ExportOptions(variants=["int4"])
        ),
        INVALID,
        "int4",
    ),
    (
        "serialization",
        "StartExportJob",
        s.StartExportJobRequest(
            source=c.VersionRef(model_name="nope", version=1), options=c.ExportOptions(variants=["fp32"], opset=3)
        ),
        INVALID,
        "opset",
    ),
    (
        "serialization",
        "StartExportJob",
        s.StartExportJobRequest(
            source=c.VersionRef(model_name="nope", version=1),
            options=c.ExportOptions(variants=["fp32"], pruning_sparsity=1.5),
        ),
        INVALID,
        "sparsity",
    ),
    (
        "serialization",
        "StartExportJob",
        s.StartExportJobRequest(
            source=c.VersionRef(model_name="nope", version=1), options=c.ExportOptions(variants=["fp32"])
        ),
        NOT_FOUND,
        "nope",
    ),
    ("serialization", "GetExportJob", s.GetExportJobRequest(job_id="zzz"), NOT_FOUND, "zzz"),
    ("serialization", "ListExportJobs", s.ListExportJobsRequest(page_token="%%%"), INVALID, "page_token"),
    # registry
    ("registry", "GetVersion", r.GetVersionRequest(ref=c.VersionRef(model_name="nope", version=1)), NOT_FOUND, "nope"),
    ("registry", "CreateModel", r.CreateModelRequest(name="a/../b"), INVALID, "name"),
    ("registry", "CreateModel", r.CreateModelRequest(name="ctl\x07char"), INVALID, "name"),
    ("registry", "SetAlias", r.SetAliasRequest(model_name="nope", alias="123", version=1), INVALID, "alias"),
    # inference
    ("inference", "ModelInfer", o.ModelInferRequest(model_name="nope"), NOT_FOUND, "nope"),
    ("inference", "ModelMetadata", o.ModelMetadataRequest(name="nope"), NOT_FOUND, "nope"),
    ("inference", "RepositoryModelUnload", o.RepositoryModelUnloadRequest(model_name="nope"), NOT_FOUND, "nope"),
    ("inference", "ModelStatistics", o.ModelStatisticsRequest(name="nope"), NOT_FOUND, "nope"),
    # unparseable bytes (bytes are sent as they are): INVALID_ARGUMENT, never UNKNOWN naming a parser class
    ("inference", "ModelInfer", GARBAGE, INVALID, UNPARSEABLE),
    ("inference", "ModelInfer", deep_nesting(), INVALID, UNPARSEABLE),
    ("inference", "ModelMetadata", b"\x0a\xff\xff\xff\xff\x0f", INVALID, UNPARSEABLE),  # length past the end
    ("registry", "CreateVersion", GARBAGE, INVALID, UNPARSEABLE),
    ("registry", "CreateVersion", deep_nesting(), INVALID, UNPARSEABLE),
    ("registry", "GetVersion", b"\x08\x80\x80\x80", INVALID, UNPARSEABLE),  # truncated varint
    ("training", "StartTrainingJob", GARBAGE, INVALID, UNPARSEABLE),
    ("training", "StartTrainingJob", deep_nesting(), INVALID, UNPARSEABLE),
    ("serialization", "StartExportJob", GARBAGE, INVALID, UNPARSEABLE),
    ("serialization", "GetExportJob", deep_nesting(), INVALID, UNPARSEABLE),
    ("health", "Check", GARBAGE, INVALID, UNPARSEABLE),
    # idempotency keys
    ("registry", "CreateModel", r.CreateModelRequest(name="idem", request_id="k" * 129), INVALID, "request_id"),
    (
        "registry",
        "CreateModel",
        r.CreateModelRequest(name="idem-second", exist_ok=True, request_id="idem-key-1"),
        PRECONDITION,
        "different",
    ),
    # load failures and external data (an inference server over a repository with broken models)
    (
        "inference-repo",
        "ModelInfer",
        o.ModelInferRequest(model_name="digits", model_version="2"),
        UNAVAILABLE,
        "error id",
    ),
    load_refused("digits", "version 2 failed to load"),
    load_refused("hardlink", "hard link"),
    load_refused("symlink", "symbolic link"),
    load_refused("dotdot", "inside the model's folder"),
    load_refused("absolute", "relative path"),
    ("inference-repo", "ModelInfer", o.ModelInferRequest(model_name="hardlink"), UNAVAILABLE, "hard link"),
    # usage metering (served by the registry)
    ("usage", "RecordUsage", usage_of(principal="", model="m", requests=1), INVALID, "principal"),
    ("usage", "RecordUsage", usage_of(principal="p", model="m", requests=-5), INVALID, ">= 0"),
    ("usage", "RecordUsage", usage_of(principal="p", model="m", compute_seconds=float("nan")), INVALID, ">= 0"),
    ("usage", "RecordUsage", usage_of(principal="p", model="m", rows=2**62), INVALID, "<="),
    ("usage", "RecordUsage", usage_of(principal="p", model="m\n", requests=1), INVALID, "model"),
    ("usage", "ListUsage", u.ListUsageRequest(since=Timestamp(seconds=-(10**12))), INVALID, "since"),
    ("usage", "ListUsage", u.ListUsageRequest(since=Timestamp(seconds=5, nanos=-1)), INVALID, "nanos"),
    # drift monitoring (served by inference)
    ("monitoring", "GetDrift", m.GetDriftRequest(), INVALID, "model_name"),
    ("monitoring", "GetDrift", m.GetDriftRequest(model_name="x" * 300), INVALID, "model_name"),
    ("monitoring", "GetDrift", m.GetDriftRequest(model_name="nope"), NOT_FOUND, "nope"),
    ("monitoring", "RecordFeedback", m.RecordFeedbackRequest(model_name="mlp", labels=[1]), INVALID, "request_id"),
    ("monitoring", "RecordFeedback", m.RecordFeedbackRequest(model_name="mlp", request_id="r"), INVALID, "labels"),
    (
        "monitoring",
        "RecordFeedback",
        m.RecordFeedbackRequest(model_name="mlp", request_id="never-sent", labels=[1]),
        NOT_FOUND,
        "never-sent",
    ),
    # explanations (served by serialization)
    ("explain", "Explain", e.ExplainRequest(inputs=[1.0]), INVALID, "model_name"),
    ("explain", "Explain", e.ExplainRequest(ref=c.VersionRef(model_name="m")), INVALID, "inputs"),
    (
        "explain",
        "Explain",
        e.ExplainRequest(ref=c.VersionRef(model_name="m"), inputs=[1], method="magic"),
        INVALID,
        "method",
    ),
    ("explain", "Explain", e.ExplainRequest(ref=c.VersionRef(model_name="m"), inputs=[1], steps=-2), INVALID, "steps"),
    (
        "explain",
        "Explain",
        e.ExplainRequest(ref=c.VersionRef(model_name="nope", version=1), inputs=[1]),
        NOT_FOUND,
        "nope",
    ),
    (
        "explain",
        "Explain",
        e.ExplainRequest(ref=c.VersionRef(model_name="../x", version=1), inputs=[1]),
        INVALID,
        "name",
    ),
]

# Calls made once before the table, whose state some cases need.
SETUP: list[tuple[str, str, Any]] = [
    ("registry", "CreateModel", r.CreateModelRequest(name="idem-first", request_id="idem-key-1")),
]

STUBS: dict[str, Callable[[grpc.Channel], Any]] = {
    "registry": rg.RegistryServiceStub,
    "inference-repo": og.GRPCInferenceServiceStub,
    "health": health_pb2_grpc.HealthStub,
    "training": tg.TrainingServiceStub,
    "serialization": sg.SerializationServiceStub,
    "inference": og.GRPCInferenceServiceStub,
    "usage": ug.UsageServiceStub,
    "monitoring": mg.MonitoringServiceStub,
    "explain": eg.ExplanationServiceStub,
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """The four services as real processes on ephemeral ports."""
    running = Suite(tmp_path_factory.mktemp("hostile"), ports=dict.fromkeys(DEFAULT_PORTS, 0))
    running.start()
    for service, method, request in SETUP:
        with grpc.insecure_channel(running.target(service)) as channel:
            getattr(STUBS[service](channel), method)(request, timeout=30)
    yield running
    codes = running.stop()
    assert set(codes.values()) == {0}, codes


HOSTS = {"health": "registry", "usage": "registry", "monitoring": "inference", "explain": "serialization"}
"""The suite service that answers each table entry's calls."""


def _call(target: str, service: str, method: str, request: Any) -> grpc.RpcError | None:
    with grpc.insecure_channel(target) as channel:
        try:
            if isinstance(request, bytes):
                unary_raw(channel, service.removesuffix("-repo"), method)(request, timeout=30)
            else:
                getattr(STUBS[service](channel), method)(request, timeout=30)
        except grpc.RpcError as exc:
            return exc
    return None


@pytest.mark.parametrize(
    ("service", "method", "request_message", "code", "fragment"),
    CASES,
    ids=[f"{case[0]}.{case[1]}-{i}" for i, case in enumerate(CASES)],
)
def test_hostile_request(
    suite: Suite,
    request: pytest.FixtureRequest,
    service: str,
    method: str,
    request_message: Any,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    if service == "inference-repo":
        repo: ServiceProcess = request.getfixturevalue("broken_repository")
        target, home = repo.address, repo.home
    else:
        target, home = suite.target(HOSTS.get(service, service)), Path(suite.home)
    error = _call(target, service, method, request_message)
    assert error is not None, f"{service}.{method} accepted a hostile request: {request_message!r:.200}"
    assert error.code() == code, (error.code(), error.details())
    assert fragment.lower() in (error.details() or "").lower(), error.details()
    assert_clean_details(error.details(), home)
    for marker in ("<class", "DecodeError", "Exception", "onnxruntime"):
        assert marker not in (error.details() or ""), f"leaked {marker!r} in {error.details()!r}"


def _import(suite: Suite, parts: list[s.ImportModelRequest]) -> grpc.RpcError:
    with grpc.insecure_channel(suite.target("serialization")) as channel, pytest.raises(grpc.RpcError) as info:
        sg.SerializationServiceStub(channel).ImportModel(iter(parts), timeout=30)
    return info.value


def test_hostile_imports(suite: Suite) -> None:
    header = s.ImportModelRequest(header=s.ImportHeader(model_name="imported"))
    garbage = b"\x08\x07garbage that is not an onnx model"
    cases = [
        ([s.ImportModelRequest(chunk=b"x")], INVALID, "header"),
        ([header], INVALID, "sha256"),
        ([header, s.ImportModelRequest(chunk=garbage), s.ImportModelRequest(sha256="00")], DATA_LOSS, "sha256"),
        (
            [
                header,
                s.ImportModelRequest(chunk=garbage),
                s.ImportModelRequest(sha256=hashlib.sha256(garbage).hexdigest()),
            ],
            INVALID,
            "onnx",
        ),
    ]
    for parts, code, fragment in cases:
        error = _import(suite, parts)
        assert error.code() == code, (error.code(), error.details())
        assert fragment in (error.details() or "").lower(), error.details()


def _npz(**arrays: Any) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_hostile_import_calibration_data(suite: Suite, tmp_path: Path) -> None:
    """ImportModel's calibration ``.npz`` and an HF folder's calibration sentences (#19: reference statistics
    of imports): refused with what to fix, before anything is registered."""
    import numpy as np

    from aiaas_services.inference.examples import export_mlp

    model = export_mlp(tmp_path / "model.onnx").read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    rows = np.zeros((20, 64), np.float32)
    cases = [
        (b"PK\x03\x04 not really a zip", "onnx", "not a readable .npz"),
        (_npz(pixels=rows), "onnx", "no array for input 'input'"),
        (_npz(input=rows[:, :10]), "onnx", "axis 1 must be 64"),
        (_npz(input=np.array([{"a": 1}] * 20, dtype=object)), "onnx", "not a readable .npz"),  # a pickle
        (_npz(input=np.zeros((0, 64), np.float32)), "onnx", "no rows"),
        (_npz(input=rows), "hf", "ONNX imports only"),
    ]
    text_cases = [  # an HF folder's calibration sentences, checked before the upload
        (b"a sentence\n", "onnx", "folder imports only"),
        (b"caf\xe9\n", "hf", "not UTF-8"),
        (b" \n\n", "hf", "holds no sentences"),
        (b'{"sentence": "hi"}\n', "hf", 'no string field "text"'),
    ]
    for payload, kind, fragment in [*cases, *text_cases]:
        task = "embedding" if kind == "hf" else ""
        header = s.ImportHeader(model_name="calibrated", format=kind, task=task)
        if (payload, kind, fragment) in text_cases:
            header.calibration_text = payload
        else:
            header.calibration_npz = payload
        parts = [
            s.ImportModelRequest(header=header),
            s.ImportModelRequest(chunk=model),
            s.ImportModelRequest(sha256=digest),
        ]
        error = _import(suite, parts)
        assert error.code() == INVALID, (error.code(), error.details())
        assert fragment in (error.details() or ""), error.details()
        assert_clean_details(error.details(), suite.home)
    with grpc.insecure_channel(suite.target("registry")) as channel, pytest.raises(grpc.RpcError) as absent:
        rg.RegistryServiceStub(channel).GetModel(r.GetModelRequest(name="calibrated"), timeout=30)
    assert absent.value.code() == NOT_FOUND  # nothing was registered


def test_every_service_still_healthy(suite: Suite) -> None:
    for name, service in suite.services.items():
        assert service.process.poll() is None, f"{name} died"
        with grpc.insecure_channel(service.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def test_a_bad_version_never_blocks_a_good_one(request: pytest.FixtureRequest) -> None:
    """Truncated version 2 beside a good version 1: 1 serves, 2 is UNAVAILABLE with reason + error id."""
    repo: ServiceProcess = request.getfixturevalue("broken_repository")
    with grpc.insecure_channel(repo.address) as channel:
        stub = og.GRPCInferenceServiceStub(channel)
        rows = {(m.name, m.version): m for m in stub.RepositoryIndex(o.RepositoryIndexRequest(), timeout=10).models}
        infer = o.ModelInferRequest(model_name="digits")
        infer.inputs.add(name="input", datatype="FP32", shape=[1, 64]).contents.fp32_contents.extend([1.0] * 64)
        reply = stub.ModelInfer(infer, timeout=10)
    assert reply.model_version == "1"
    assert rows["digits", "1"].state == "READY"
    bad = rows["digits", "2"]
    assert bad.state == "UNAVAILABLE" and "error id" in bad.reason, bad
    assert "ONNX" in bad.reason or "protobuf" in bad.reason.lower(), bad.reason
    error_id = bad.reason.rsplit("error id ", 1)[1].rstrip(")")
    assert error_id in repo.log(), "the error id must lead to the log entry"
    assert_clean_details(bad.reason, repo.home)
    assert rows["external", "1"].state == "READY"  # external data that follows the rules loads
    for name in ("hardlink", "symlink", "dotdot", "absolute"):
        assert rows[name, "1"].state == "UNAVAILABLE", rows[name, "1"]


# REST twin of the inference rows: (method, path, body, headers, HTTP status, fragment)
REST_CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("POST", "/v2/models/nope/infer", b'{"inputs": []}', {}, 404, "nope"),
    ("POST", "/v2/models/nope/infer", b"{not json", {}, 400, "not valid json"),
    ("POST", "/v2/models/nope/infer", b'"inputs"', {}, 400, "json object"),
    ("POST", "/v2/models/nope/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "abc"}, 400, "integer"),
    ("POST", "/v2/models/nope/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}, 400, "length"),
    ("POST", "/v2/models/nope/infer", b'{"inputs": [3]}', {}, 400, "tensor objects"),
    ("GET", "/v2/models/nope", b"", {}, 404, "nope"),
    ("GET", "/v2/models/nope/stats", b"", {}, 404, "nope"),
    ("GET", "/v2/models/nope/ready", b"", {}, 404, "nope"),
    ("POST", "/v2/repository/models/nope/unload", b"", {}, 404, "nope"),
    ("POST", "/v2/repository/index", b"[1]", {}, 400, "json object"),
    ("GET", "/../../etc/passwd", b"", {}, 404, "/v2"),
    ("DELETE", "/v2", b"", {}, 405, "GET"),
    ("POST", "/v2/models/nope/infer", b"{}", {"Content-Encoding": "gzip"}, 400, "uncompressed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "fragment"),
    REST_CASES,
    ids=[f"rest.{case[0]}-{i}" for i, case in enumerate(REST_CASES)],
)
def test_hostile_rest_request(
    suite: Suite, method: str, path: str, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    import requests

    url = suite.services["inference"].http_url
    reply = requests.request(method, f"{url}{path}", data=body, headers=headers, timeout=30)
    assert reply.status_code == status, (reply.status_code, reply.text)
    message = reply.json()["error"]
    assert fragment.lower() in message.lower(), message
    assert_clean_details(message, Path(suite.home))


DIGITS_BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# REST under bearer tokens (robustness/conftest.py GUARDED_TOKENS): (method, path, body, headers, status, fragment)
REST_AUTH_CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("POST", "/v2/models/digits/infer", DIGITS_BODY, {}, 401, "Authorization: Bearer"),
    ("POST", "/v2/models/digits/infer", DIGITS_BODY, {"Authorization": "Basic cmVhZGVyOg=="}, 401, "missing bearer"),
    ("POST", "/v2/models/digits/infer", DIGITS_BODY, bearer("wrong"), 401, "unknown bearer token"),
    ("POST", "/v2/models/digits/infer", DIGITS_BODY, bearer("r" * 4000), 401, "unknown bearer token"),
    ("GET", "/v2/models/digits", b"", {"Authorization": "Bearer"}, 401, "missing bearer"),
    ("POST", "/v2/models/other/infer", DIGITS_BODY, bearer("digits-only"), 403, "may not read model 'other'"),
    ("GET", "/v2/models/other/versions/1/ready", b"", bearer("digits-only"), 403, "covers digits*"),
    ("GET", "/v2/models/other/config", b"", bearer("digits-only"), 403, "may not read model 'other'"),
    ("POST", "/v2/repository/index", b"", bearer("digits-only"), 403, "not about one model"),
    ("GET", "/v2/models/stats", b"", bearer("digits-only"), 403, "not about one model"),
    ("POST", "/v2/repository/models/digits/unload", b"", bearer("digits-only"), 403, "'write' scope"),
    ("POST", "/v2/repository/models/digits/load", b"", bearer("reader"), 403, "'write' scope"),
    ("POST", "/v2/models/digits/infer", DIGITS_BODY, bearer("no-quota"), 429, "quota of 0 calls per 3600s"),
    ("GET", "/v2/models/digits", b"", bearer("no-quota"), 429, "renews in"),
    ("POST", "/v2/models/digits/infer", b"{not json", bearer("digits-only"), 400, "not valid json"),
    ("GET", "/v2/models/digits", b"", {"Authorization": "Bearer \x7f"}, 400, "not valid HTTP/1.1"),  # the parser's
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "fragment"),
    REST_AUTH_CASES,
    ids=[f"rest-auth.{case[0]}-{i}" for i, case in enumerate(REST_AUTH_CASES)],
)
def test_hostile_rest_request_under_tokens(
    guarded_inference: ServiceProcess,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    import requests

    url = guarded_inference.http_url
    reply = requests.request(method, f"{url}{path}", data=body, headers=headers, timeout=30)
    assert reply.status_code == status, (reply.status_code, reply.text)
    message = reply.json()["error"]
    assert fragment.lower() in message.lower(), message
    assert_clean_details(message, guarded_inference.home)
    if status == 429:  # the wait, as HTTP says it: whole seconds until the quota renews
        assert 1 <= int(reply.headers["Retry-After"]) <= 3600, reply.headers
    # The service keeps serving the tokens that may call it.
    ok = requests.post(f"{url}/v2/models/digits/infer", data=DIGITS_BODY, headers=bearer("reader"), timeout=30)
    assert ok.status_code == 200, ok.text
