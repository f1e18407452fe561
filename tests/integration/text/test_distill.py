"""Distillation: a small from-scratch student (its own WordPiece vocabulary, a BiGRU) learns from the
fine-tuned MiniLM teacher, downloaded from the registry; it keeps most of the teacher's accuracy while
being far smaller and faster, and exports with the tokenizer in the graph like the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.registry import SyncRegistryClient
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas_services.runtime import custom_ops
from aiaas_services.training.text.data import parse_table
from aiaas_services.training.text.finetune import FinetuneConfig, split
from aiaas_services.training.text.student import StudentConfig, StudentTrainer, latency_ms, teacher_soft_targets
from tests.integration.text.conftest import CLASSIFIER
from tests.support.text_data import csv_bytes

# The session's fixtures import, fine-tune and export MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)


def test_distilled_student_keeps_the_teachers_accuracy(
    classifier_exported: tuple[pb.ImportModelResponse, pb.ExportJob],
    finetuned: tuple[Path, dict],
    text_registry: SyncRegistryClient,
    tmp_path: Path,
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    imported, _ = classifier_exported
    ref = (CLASSIFIER, imported.registered.version)
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    for artifact in text_registry.get_version(ref).artifacts:  # the teacher is the registered version
        (teacher_dir / artifact.name).write_bytes(text_registry.download_bytes(ref, artifact.name))
    teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir), local_files_only=True)

    table = parse_table(csv_bytes(90), "topics.csv")  # the teacher's table and split
    train_rows, test_rows = split(table, FinetuneConfig().test_fraction, FinetuneConfig().seed)
    config = StudentConfig(epochs=8, temperature=2.0, alpha=0.7)
    student = StudentTrainer(table, train_rows, test_rows, config)
    history = student.fit(
        lambda rows: teacher_soft_targets(teacher, tokenizer, [table.texts[i] for i in rows], config.temperature)
    )
    held_out = table.labels[test_rows]
    student_accuracy = float((student.predict(test_rows) == held_out).mean())
    teacher_accuracy = finetuned[1]["test_metrics"]["accuracy"]
    majority = finetuned[1]["majority_baseline"]
    assert history[-1]["validation"]["accuracy"] == student_accuracy
    assert student_accuracy >= teacher_accuracy - 0.15 and student_accuracy >= majority + 0.3, (
        student_accuracy,
        teacher_accuracy,
    )

    # smaller and faster (torch, batch 32 of held-out sentences, same process)
    texts = [table.texts[i] for i in test_rows][:32]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    teacher_ms = latency_ms(lambda: teacher(**encoded))
    ids, mask = student.encode(test_rows[:32])
    student_ms = latency_ms(lambda: student.model.logits(ids, mask))
    teacher_params = sum(p.numel() for p in teacher.parameters())
    student_params = sum(p.numel() for p in student.model.parameters())
    assert student_params * 20 < teacher_params and student_ms < teacher_ms, (student_ms, teacher_ms)

    # the student exports like the teacher: strings in, labels out
    path = student.export(tmp_path / "student")
    session = ort.InferenceSession(
        str(path), custom_ops.register(ort.SessionOptions()), providers=["CPUExecutionProvider"]
    )
    logits, _, labels = session.run(None, {"text": np.array(texts, dtype=object)})
    assert [label.decode() if isinstance(label, bytes) else label for label in labels] == [
        table.label_names[i] for i in logits.argmax(1)
    ]
    agreement = float((logits.argmax(1) == student.predict(test_rows[:32])).mean())
    assert agreement == 1.0
