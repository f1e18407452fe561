"""One text job inside a training worker: table + (base | teacher | nothing) -> an HF folder in ``<job dir>/result``.

Fine-tune: the base folder (fetched by the server into ``<job dir>/source``) gets a classification head.
Distill: the teacher's soft targets on the training rows train a small student (``student.py``); the
report compares the two (held-out accuracy, parameters, torch latency at batch 32). From scratch: the same
student on the labels alone. The result folder holds the HF files, ``curves.png``, ``reference.json``
(drift reference statistics of the training rows: their lengths and predicted classes, see
monitoring/drift.py) and ``result.json`` (what the registration needs; ``artifacts`` lists the files to
register).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiaas_services.monitoring.drift import text_reference_stats
from aiaas_services.training.curves import plot_curves
from aiaas_services.training.paths import DATASET_FILE, RESULT_DIR, SOURCE_DIR, JobRequest
from aiaas_services.training.spec import DISTILL, FINETUNE, JobSpec, TextJob
from aiaas_services.training.text.data import TextTable, parse_table
from aiaas_services.training.text.finetune import FinetuneConfig, TextClassifierTrainer, split
from aiaas_services.training.text.student import (
    StudentShape,
    build_student,
    latency_ms,
    parameters,
    teacher_soft_targets,
    train_vocabulary,
)
from aiaas_services.training.trainer import Hooks, configure_torch

REFERENCE_ROWS = 10_000  # training rows the drift reference is made of (the first ones): bounded work
STUDENT_VOCAB = "student-vocab.txt"  # <job dir>/student-vocab.txt: kept so a resumed student tokenizes the same


def run_text_job(request: JobRequest, hooks: Hooks) -> dict[str, Any]:
    """Train, evaluate and write the result folder; returns the result summary."""
    configure_torch(request.torch_threads)
    spec = request.spec
    text = spec.text
    assert text is not None and spec.dataset is not None
    job_dir = Path(request.job_dir)
    payload = (job_dir / DATASET_FILE).read_bytes()
    table = parse_table(payload, spec.dataset.artifact_name)
    config = finetune_config(spec, text)
    source = job_dir / SOURCE_DIR
    extra: dict[str, Any] = {}
    if text.mode == FINETUNE:
        trainer = TextClassifierTrainer.from_base(source, table, config, job_dir, hooks)
    else:
        soft = None
        if text.mode == DISTILL:
            soft, extra = _teacher(source, table, config, hooks)
        trainer = _student(job_dir, table, config, text, spec.train.seed, hooks, soft)
    if request.resume and trainer.resume():
        hooks.on_message(f"resumed from the checkpoint of epoch {trainer.epoch}")
        for record in trainer.history:  # the server keeps those it has not seen yet
            hooks.on_epoch(record)
    trainer.fit()
    result_dir = job_dir / RESULT_DIR
    result_dir.mkdir(parents=True, exist_ok=True)
    summary = trainer.save(result_dir)
    reference = training_reference(trainer, table)
    (result_dir / "reference.json").write_text(json.dumps(reference))
    test_metrics = dict(summary["test_metrics"], majority_baseline=summary["majority_baseline"])
    if text.mode == DISTILL:
        extra |= _compare(trainer, source, table, config)
        test_metrics["teacher_accuracy"] = extra["teacher_accuracy"]
        test_metrics["accuracy_delta_vs_teacher"] = test_metrics["accuracy"] - extra["teacher_accuracy"]
        hooks.on_message(
            f"student: accuracy {test_metrics['accuracy']:.3f} vs the teacher's {extra['teacher_accuracy']:.3f}, "
            f"{extra['student_parameters']:,} parameters vs {extra['teacher_parameters']:,}, "
            f"{extra['student_ms_b32']:.1f} ms vs {extra['teacher_ms_b32']:.1f} ms per batch of 32 (torch)"
        )
    what = {FINETUNE: "fine-tuned", DISTILL: "distilled"}.get(text.mode, "from scratch")
    plot_curves(trainer.history, result_dir / "curves.png", f"{spec.model_name} ({what})")
    artifacts = sorted(p.name for p in result_dir.iterdir() if p.is_file() and not p.name.startswith("result.json"))
    config_json = json.loads((result_dir / "config.json").read_text("utf-8"))
    result = {
        "test_metrics": test_metrics,
        "confusion_matrix": summary["confusion_matrix"],
        "num_classes": len(table.label_names),
        "label_names": list(table.label_names),
        "dataset_digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
        "device": "cpu",
        "epochs_run": trainer.epoch,
        "task": text.task,
        "artifacts": artifacts,
        "source": {"model_name": text.source.model_name, "version": text.source.version} if text.source else {},
        "text_settings": _settings(text),
        "max_positions": int(config_json.get("max_position_embeddings") or 512),
        "distill": {k: v for k, v in extra.items() if k != "teacher_accuracy"} if extra else {},
    }
    tmp = result_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_dir / "result.json")
    return result


def training_reference(trainer: TextClassifierTrainer, table: TextTable) -> dict[str, Any]:
    """Reference statistics of the training rows as the trained model sees them (what tabular training
    records too): the texts' length histograms and the predicted classes' shares. The ONNX exports of the
    checkpoint find them through their ``source`` tag, so ``aiaas monitor`` scores them."""
    rows = trainer.train_rows[:REFERENCE_ROWS]
    stats = text_reference_stats([table.texts[i] for i in rows], trainer.predict(rows), len(table.label_names))
    stats["source"] = "training split"
    return stats


def finetune_config(spec: JobSpec, text: TextJob) -> FinetuneConfig:
    """The trainer's settings from the job's (defaults resolved by the codec)."""
    train = spec.train
    return FinetuneConfig(
        epochs=train.epochs,
        batch_size=train.batch_size,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        max_length=text.max_length,
        test_fraction=float(spec.data.get("test_fraction") or 0.2),
        seed=train.seed,
        freeze_encoder=text.freeze_encoder,
        temperature=text.temperature,
        alpha=text.alpha,
    )


def _settings(text: TextJob) -> dict[str, Any]:
    settings: dict[str, Any] = {"mode": text.mode, "task": text.task, "max_length": text.max_length}
    if text.mode == FINETUNE:
        settings["freeze_encoder"] = text.freeze_encoder
    else:
        settings |= {
            "student_vocab_size": text.student_vocab_size,
            "student_hidden_size": text.student_hidden_size,
            "student_layers": text.student_layers,
            "student_heads": text.student_heads,
        }
    if text.mode == DISTILL:
        settings |= {"temperature": text.temperature, "alpha": text.alpha}
    return settings


def _load_teacher(folder: Path) -> tuple[Any, Any, tuple[str, ...]]:
    # transformers: loaded only when a text job runs (heavy; the training server never needs it)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    names = tuple(str(model.config.id2label[i]) for i in range(model.config.num_labels))
    return model, tokenizer, names


def _teacher(folder: Path, table: TextTable, config: FinetuneConfig, hooks: Hooks) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's soft targets for every row (columns in the table's label order) and its held-out accuracy."""
    model, tokenizer, names = _load_teacher(folder)
    if sorted(names) != sorted(table.label_names):
        raise ValueError(
            f"the teacher answers the labels {list(names)}, the data has {list(table.label_names)}; distill on data "
            "labelled like the teacher's"
        )
    hooks.on_message(f"computing the teacher's soft targets at temperature {config.temperature}")
    order = [names.index(name) for name in table.label_names]
    soft = teacher_soft_targets(model, tokenizer, table.texts, config.temperature, config.max_length)[:, order]
    _, test_rows = split(table, config.test_fraction, config.seed)
    hard = teacher_soft_targets(model, tokenizer, [table.texts[i] for i in test_rows], 1.0, config.max_length)
    accuracy = float((hard[:, order].argmax(1) == table.labels[test_rows]).mean())
    return soft, {"teacher_accuracy": accuracy}


def _student(
    job_dir: Path,
    table: TextTable,
    config: FinetuneConfig,
    text: TextJob,
    seed: int,
    hooks: Hooks,
    soft: np.ndarray | None,
) -> TextClassifierTrainer:
    """A fresh student whose vocabulary is learned from the training split (kept for a resume)."""
    vocab_file = job_dir / STUDENT_VOCAB
    if not vocab_file.exists():
        train_rows, _ = split(table, config.test_fraction, config.seed)
        vocab = train_vocabulary([table.texts[i] for i in train_rows], text.student_vocab_size)
        tmp = vocab_file.with_suffix(".tmp")
        tmp.write_text("\n".join(vocab) + "\n", "utf-8")
        os.replace(tmp, vocab_file)
        hooks.on_message(f"learned a WordPiece vocabulary of {len(vocab)} tokens from the training split")
    shape = StudentShape(
        text.student_vocab_size, text.student_hidden_size, text.student_layers, text.student_heads, text.max_length
    )
    model, tokenizer = build_student(vocab_file, table.label_names, shape, seed)
    return TextClassifierTrainer(
        model, tokenizer, table, config, job_dir, hooks, soft_targets=soft, vocab_file=vocab_file
    )


def _compare(student: TextClassifierTrainer, folder: Path, table: TextTable, config: FinetuneConfig) -> dict[str, Any]:
    """Parameters and torch latency at batch 32 of the student and the teacher, on held-out texts."""
    teacher, tokenizer, _ = _load_teacher(folder)
    rows = (student.test_rows * 32)[:32]
    texts = [table.texts[i] for i in rows]
    with torch.no_grad():
        teacher_in = tokenizer(texts, padding=True, truncation=True, max_length=config.max_length, return_tensors="pt")
        student_in = student.encode(rows)
        student.model.eval()
        teacher_ms = latency_ms(lambda: teacher(**teacher_in))
        student_ms = latency_ms(lambda: student.model(**student_in))
    return {
        "teacher_parameters": parameters(teacher),
        "student_parameters": parameters(student.model),
        "teacher_ms_b32": teacher_ms,
        "student_ms_b32": student_ms,
    }
