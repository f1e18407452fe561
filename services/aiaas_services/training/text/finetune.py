"""Fine-tune a Hugging Face encoder (an HF folder) for sequence classification on a labelled text table.

The job machinery's contract is kept: ``hooks.on_epoch`` gets one record per epoch (train loss,
validation accuracy / precision / recall / F1), ``hooks.cancelled`` is checked between batches, and the
model and optimizer are checkpointed after every epoch so a job resumes where it stopped. The result is
a plain HF folder (config with id2label, model.safetensors, the base's tokenizer files) that the
serialization service exports with the tokenizer in the graph, like an imported one.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from aiaas_services.training.text.data import TextTable
from aiaas_services.training.trainer import Cancelled, Hooks

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
CHECKPOINT = "text-checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparameters of a fine-tune (BERT-style defaults)."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    max_length: int = 128
    test_fraction: float = 0.2
    seed: int = 0
    freeze_encoder: bool = False


def split(table: TextTable, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified train / held-out row indices."""
    rows = np.arange(len(table.texts))
    train, test = train_test_split(rows, test_size=fraction, random_state=seed, stratify=table.labels)
    return sorted(int(i) for i in train), sorted(int(i) for i in test)


def metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1."""
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    return {
        "accuracy": float((labels == predicted).mean()),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }


class TextClassifierTrainer:
    """One fine-tune: base folder + table -> result folder, with per-epoch checkpoints in ``job_dir``."""

    def __init__(
        self, base: Path, table: TextTable, config: FinetuneConfig, job_dir: Path, hooks: Hooks | None = None
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.base, self.table, self.config, self.job_dir = base, table, config, job_dir
        self.hooks = hooks or Hooks()
        torch.manual_seed(config.seed)
        names = table.label_names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(base),
                local_files_only=True,
                use_safetensors=True,
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                ignore_mismatched_sizes=True,
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        if config.freeze_encoder:
            for name, parameter in self.model.named_parameters():
                parameter.requires_grad = name.startswith("classifier")
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.train_rows, self.test_rows = split(table, config.test_fraction, config.seed)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    def _encode(self, rows: list[int]) -> dict[str, torch.Tensor]:
        texts = [self.table.texts[i] for i in rows]
        return dict(
            self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt")
        )

    def predict(self, rows: list[int]) -> np.ndarray:
        """Arg-max labels for the given rows (eval mode, no gradients)."""
        self.model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 64):
                out.append(self.model(**self._encode(rows[start : start + 64])).logits.argmax(-1).numpy())
        return np.concatenate(out)

    def resume(self) -> bool:
        """Load the epoch checkpoint if there is one."""
        path = self.job_dir / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = json.loads(state["history"])
        return True

    def fit(self) -> list[dict[str, Any]]:
        """Train the remaining epochs; one record per epoch goes to the hooks."""
        rng = np.random.default_rng(self.config.seed)
        labels = torch.from_numpy(self.table.labels)
        held_out = self.table.labels[self.test_rows]
        while self.epoch < self.config.epochs:
            started = time.perf_counter()
            self.model.train()
            order = rng.permutation(self.train_rows)
            total, batches = 0.0, 0
            for start in range(0, len(order), self.config.batch_size):
                if self.hooks.cancelled():
                    raise Cancelled()
                rows = [int(i) for i in order[start : start + self.config.batch_size]]
                out = self.model(**self._encode(rows), labels=labels[rows])
                self.optimizer.zero_grad()
                out.loss.backward()
                self.optimizer.step()
                total += out.loss.item()
                batches += 1
            self.epoch += 1
            validation = metrics(held_out, self.predict(self.test_rows))
            record = {
                "epoch": self.epoch,
                "train": {"loss": total / max(1, batches)},
                "validation": validation,
                "learning_rate": self.config.learning_rate,
                "seconds": time.perf_counter() - started,
            }
            self.history.append(record)
            self._checkpoint()
            self.hooks.on_epoch(record)
        return self.history

    def _checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": json.dumps(self.history),
        }
        tmp = self.job_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.job_dir / CHECKPOINT)

    def save(self, folder: Path) -> dict[str, Any]:
        """The fine-tuned HF folder (safetensors only) and the held-out metrics; returns the summary."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (self.base / name).is_file():
                shutil.copyfile(self.base / name, folder / name)
        predicted = self.predict(self.test_rows)
        held_out = self.table.labels[self.test_rows]
        majority = float(np.bincount(held_out).max() / len(held_out))
        return {
            "test_metrics": metrics(held_out, predicted),
            "majority_baseline": majority,
            "label_names": list(self.table.label_names),
            "epochs_run": self.epoch,
            "num_train": len(self.train_rows),
            "num_test": len(self.test_rows),
        }
