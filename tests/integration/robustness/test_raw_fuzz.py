"""Thousands of raw-byte requests per service (random, truncated, bit-flipped and spliced valid messages):
no UNKNOWN or INTERNAL, nothing leaked, every service still healthy. Sent concurrently so each service
takes a few seconds."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.common.v1 import common_pb2
from aiaas.explain.v1 import explain_pb2 as exp
from aiaas.monitoring.v1 import monitoring_pb2 as mon
from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.registry.v1 import registry_pb2 as reg
from aiaas.serialization.v1 import serialization_pb2 as ser
from aiaas.training.v1 import training_pb2 as tr
from aiaas.usage.v1 import usage_pb2 as use
from tests.integration.robustness.conftest import assert_clean_details
from tests.integration.robustness.raw_bytes import SERVICES, random_payloads
from tests.support.processes import ServiceProcess

PER_SERVICE = 5_000
IN_FLIGHT = 48
BAD_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)

infer = oip.ModelInferRequest(model_name="digits")
infer.inputs.add(name="input", datatype="FP32", shape=[1, 64]).contents.fp32_contents.extend([0.5] * 64)

MONITORING = "aiaas.monitoring.v1.MonitoringService/"
USAGE = "aiaas.usage.v1.UsageService/"
EXPLAIN = "aiaas.explain.v1.ExplanationService/"

# Read-only or refused-by-validation methods (a mutation of a valid write could really write). A name with
# a "/" is a method of another service the same process serves (#19's monitoring, usage, explanations).
TARGETS: dict[str, list[tuple[str, bytes]]] = {
    "inference": [
        ("ModelInfer", infer.SerializeToString()),
        ("ModelMetadata", oip.ModelMetadataRequest(name="digits").SerializeToString()),
        ("ModelReady", oip.ModelReadyRequest(name="digits", version="1").SerializeToString()),
        ("ModelStatistics", oip.ModelStatisticsRequest(name="digits").SerializeToString()),
        ("RepositoryIndex", oip.RepositoryIndexRequest(ready=True).SerializeToString()),
        (MONITORING + "GetDrift", mon.GetDriftRequest(model_name="digits", version="1").SerializeToString()),
        (
            MONITORING + "RecordFeedback",
            mon.RecordFeedbackRequest(model_name="digits", request_id="r-1", labels=[1, 2]).SerializeToString(),
        ),
    ],
    "registry": [
        ("GetVersion", reg.GetVersionRequest(ref=common_pb2.VersionRef(model_name="m", version=1)).SerializeToString()),
        ("ListVersions", reg.ListVersionsRequest(model_name="m", page_size=5).SerializeToString()),
        ("GetModel", reg.GetModelRequest(name="m").SerializeToString()),
        ("ListModels", reg.ListModelsRequest(page_size=3, name_prefix="m").SerializeToString()),
        ("ListAliasHistory", reg.ListAliasHistoryRequest(model_name="m", alias="prod").SerializeToString()),
        (USAGE + "ListUsage", use.ListUsageRequest(principal="p", model="m").SerializeToString()),
        # A valid report of 0 requests: whatever a mutation makes of it is refused or counts nothing real.
        (
            USAGE + "RecordUsage",
            use.RecordUsageRequest(entries=[use.UsageEntry(principal="p", model="m", requests=0)]).SerializeToString(),
        ),
    ],
    "training": [
        ("GetJob", tr.GetJobRequest(job_id="j").SerializeToString()),
        ("ListJobs", tr.ListJobsRequest(page_size=3).SerializeToString()),
        ("CancelJob", tr.CancelJobRequest(job_id="nope").SerializeToString()),
    ],
    "serialization": [
        ("GetExportJob", ser.GetExportJobRequest(job_id="j").SerializeToString()),
        ("ListExportJobs", ser.ListExportJobsRequest(page_size=3).SerializeToString()),
        ("CancelExportJob", ser.CancelExportJobRequest(job_id="nope").SerializeToString()),
        (  # refused by validation (steps < 0): this service has no registry for a valid one to reach
            EXPLAIN + "Explain",
            exp.ExplainRequest(
                ref=common_pb2.VersionRef(model_name="m", version=1), inputs=[0.5] * 4, steps=-2
            ).SerializeToString(),
        ),
    ],
}


async def _blast(service: str, address: str, home: Path, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    targets = TARGETS[service]
    seeds = [payload for _, payload in targets]
    codes: Counter[str] = Counter()
    failures: list[str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        methods = [
            channel.unary_unary(f"/{name}" if "/" in name else f"/{SERVICES[service]}/{name}") for name, _ in targets
        ]
        payloads = iter(enumerate(random_payloads(rng, seeds, PER_SERVICE)))

        async def worker() -> None:
            for i, payload in payloads:
                try:
                    await methods[i % len(methods)](payload, timeout=30)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                    if exc.code() in BAD_CODES or exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        failures.append(f"{targets[i % len(targets)][0]} {payload!r}: {exc.code()} {exc.details()}")
                    try:
                        assert_clean_details(exc.details(), home)
                    except AssertionError as leak:
                        failures.append(str(leak))

        await asyncio.gather(*[worker() for _ in range(IN_FLIGHT)])
    assert not failures, failures[:5]
    assert sum(codes.values()) == PER_SERVICE
    return codes


def _healthy(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", ["inference", "registry", "training", "serialization"])
def test_raw_byte_fuzz(service: str, request: pytest.FixtureRequest) -> None:
    fixture = {
        "inference": "inference_standalone",
        "registry": "registry_robust",
        "training": "training_robust",
        "serialization": "serialization_robust",
    }[service]
    process: ServiceProcess = request.getfixturevalue(fixture)
    codes = asyncio.run(_blast(service, process.address, process.home, seed=zlib.crc32(service.encode())))
    assert codes["INVALID_ARGUMENT"] > PER_SERVICE // 10, codes  # the unparseable ones said so
    assert process.process.poll() is None
    assert _healthy(process.address)
