"""A MiniLM classifier fine-tuned by the training service: beats the majority baseline on held-out rows,
is registered as a Hugging Face checkpoint with lineage to its base, exports with the tokenizer and label
lookup in the graph through the job's export block, and the served model answers labels as text."""

from __future__ import annotations

import numpy as np
import pytest

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.training.v1 import training_pb2
from aiaas.wire import HF, READY
from tests.integration.text.conftest import CLASSIFIER, CLASSIFIER_SERVED, MODEL
from tests.integration.text.test_import_export_serve import wait_ready

# The session's fixtures import, fine-tune and export MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)


def test_finetuned_classifier_beats_the_majority_baseline(finetuned: training_pb2.Job) -> None:
    job = finetuned
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    metrics = job.test_metrics
    assert metrics["accuracy"] >= metrics["majority_baseline"] + 0.4, metrics
    assert metrics["f1_macro"] >= 0.7 and {"precision_macro", "recall_macro"} <= set(metrics)
    assert job.num_classes == 3 and len(job.confusion_matrix) == 9 and sum(job.confusion_matrix) == 18
    assert [h.epoch for h in job.history] == [1, 2]
    assert {"accuracy", "loss", "f1_macro"} <= set(job.history[-1].validation) and job.history[0].train["loss"] > 0
    assert job.dataset_digest.startswith("sha256:")


def test_finetuned_classifier_is_an_hf_checkpoint_with_lineage(
    finetuned: training_pb2.Job, imported: pb.ImportModelResponse, text_registry: SyncRegistryClient
) -> None:
    version = text_registry.get_version(finetuned.registered)
    assert (version.model_name, version.status, version.format) == (CLASSIFIER, READY, HF)
    names = {a.name for a in version.artifacts}
    assert {"config.json", "model.safetensors", "vocab.txt", "curves.png"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]
    lineage = version.lineage
    assert (lineage.parent_model_name, lineage.parent_version) == (MODEL, imported.registered.version)
    assert lineage.training_job_id == finetuned.job_id and lineage.dataset_digest == finetuned.dataset_digest
    assert lineage.hyperparameters["text.mode"] == "finetune" and lineage.hyperparameters["text.max_length"] == "32"
    assert version.tags["task"] == "sequence-classification"
    assert [t.name for t in version.signature.outputs] == ["logits", "probabilities", "label"]
    assert version.metrics["accuracy"] == pytest.approx(finetuned.test_metrics["accuracy"])


def test_classifier_export_is_proven(classifier_exported: pb.ExportJob) -> None:
    job = classifier_exported
    assert job.reports and job.reports[0].accepted, job.failure_reason or job.reports[0].reason
    assert job.reports[0].top1_agreement == 1.0


def test_served_classifier_answers_labels(text_infer: SyncInferenceClient) -> None:
    wait_ready(text_infer, CLASSIFIER_SERVED)
    texts = ["The chef simmered a spicy curry.", "The developer deployed the mobile app.", "The striker scored."]
    outputs = text_infer.infer_text(CLASSIFIER_SERVED, texts).outputs
    assert [label.decode() for label in outputs["label"]] == ["cooking", "technology", "sports"]
    assert np.allclose(outputs["probabilities"].sum(1), 1.0, atol=1e-5)
    assert outputs["logits"].shape == (3, 3)
