"""A fine-tuned MiniLM classifier: beats the majority baseline on held-out rows, exports with the
tokenizer and label lookup in the graph, and the served model answers labels as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiaas.client.inference import SyncInferenceClient
from aiaas.serialization.v1 import serialization_pb2 as pb
from tests.integration.text.conftest import CLASSIFIER_SERVED
from tests.integration.text.test_import_export_serve import wait_ready

# The session's fixtures import, fine-tune and export MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)


def test_finetuned_classifier_beats_the_majority_baseline(finetuned: tuple[Path, dict]) -> None:
    folder, summary = finetuned
    assert summary["test_metrics"]["accuracy"] >= summary["majority_baseline"] + 0.4, summary
    assert summary["test_metrics"]["f1_macro"] >= 0.7
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").is_file()


def test_classifier_export_is_proven(classifier_exported: tuple[pb.ImportModelResponse, pb.ExportJob]) -> None:
    imported, job = classifier_exported
    assert [t.name for t in imported.signature.outputs] == ["logits", "probabilities", "label"]
    assert job.reports and job.reports[0].accepted, job.failure_reason or job.reports[0].reason
    assert job.reports[0].top1_agreement == 1.0


def test_served_classifier_answers_labels(text_infer: SyncInferenceClient) -> None:
    wait_ready(text_infer, CLASSIFIER_SERVED)
    texts = ["The chef simmered a spicy curry.", "The developer deployed the mobile app.", "The striker scored."]
    outputs = text_infer.infer_text(CLASSIFIER_SERVED, texts).outputs
    assert [label.decode() for label in outputs["label"]] == ["cooking", "technology", "sports"]
    assert np.allclose(outputs["probabilities"].sum(1), 1.0, atol=1e-5)
    assert outputs["logits"].shape == (3, 3)
