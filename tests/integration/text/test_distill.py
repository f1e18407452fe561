"""Distillation through the training service: a small student (a narrow BERT with its own WordPiece
vocabulary learned from the training split) learns from the fine-tuned MiniLM teacher registered in the
registry; it keeps most of the teacher's accuracy while being far smaller, is registered with lineage to
the teacher, exports with the tokenizer in the graph, and the served student answers strings. The same
student trained from scratch (no teacher) is the cheap option."""

from __future__ import annotations

import numpy as np
import pytest

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.training.v1 import training_pb2
from aiaas.wire import HF, READY
from aiaas_services.training.text.data import parse_table
from aiaas_services.training.text.finetune import split
from tests.integration.text.conftest import CLASSIFIER, STUDENT_SERVED, TOPICS_DATA, train
from tests.integration.text.test_import_export_serve import wait_ready
from tests.support.processes import ServiceProcess
from tests.support.text_data import csv_bytes

# The session's fixtures import, fine-tune and export MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)


def test_distilled_student_keeps_the_teachers_accuracy(
    distilled: training_pb2.Job, finetuned: training_pb2.Job, text_registry: SyncRegistryClient
) -> None:
    job = distilled
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    metrics = job.test_metrics
    teacher = finetuned.test_metrics["accuracy"]
    assert metrics["teacher_accuracy"] == pytest.approx(teacher, abs=1e-6)  # same held-out rows, same answers
    assert metrics["accuracy"] >= teacher - 0.15 and metrics["accuracy"] >= metrics["majority_baseline"] + 0.3, metrics
    assert metrics["accuracy_delta_vs_teacher"] == pytest.approx(metrics["accuracy"] - teacher)
    assert len(job.history) == 15

    version = text_registry.get_version(job.registered)
    assert (version.status, version.format) == (READY, HF)
    assert (version.lineage.parent_model_name, version.lineage.parent_version) == (
        CLASSIFIER,
        finetuned.registered.version,
    )
    assert version.lineage.hyperparameters["text.mode"] == "distill"
    teacher_size = sum(a.size_bytes for a in text_registry.get_version(finetuned.registered).artifacts)
    student_size = sum(a.size_bytes for a in version.artifacts if a.name == "model.safetensors")
    assert student_size * 20 < teacher_size, (student_size, teacher_size)


def test_student_export_is_proven_and_served(
    student_exported: pb.ExportJob, distilled: training_pb2.Job, text_infer: SyncInferenceClient
) -> None:
    assert student_exported.reports and student_exported.reports[0].accepted, student_exported.failure_reason
    wait_ready(text_infer, STUDENT_SERVED)
    table = parse_table(csv_bytes(90), "data.csv")
    _, test_rows = split(table, 0.2, 0)
    outputs = text_infer.infer_text(STUDENT_SERVED, [table.texts[i] for i in test_rows]).outputs
    labels = [label.decode() for label in outputs["label"]]
    assert labels == [table.label_names[i] for i in outputs["logits"].argmax(1)]
    served = float(
        np.mean([label == table.label_names[table.labels[i]] for label, i in zip(labels, test_rows, strict=True)])
    )
    assert served == pytest.approx(distilled.test_metrics["accuracy"], abs=1 / len(test_rows) + 1e-9)


def test_a_student_from_scratch_learns_the_labels(text_training: ServiceProcess, topics_data: int) -> None:
    data = f"registry:{TOPICS_DATA}/{topics_data}/data.csv"
    job = train(text_training.address, "topics-small", "--from-scratch", "--data", data, "--max-length", "32")
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    assert job.test_metrics["accuracy"] >= job.test_metrics["majority_baseline"] + 0.3, job.test_metrics
    assert "teacher_accuracy" not in job.test_metrics and len(job.history) == 15
