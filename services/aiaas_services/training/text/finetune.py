"""Train a Hugging Face sequence classifier on a labelled text table: a fine-tune of a base encoder
(an HF folder) with a new head, or a small student (``distill.py``) on a teacher's soft targets.

The job machinery's contract is kept: ``hooks.on_epoch`` gets one record per epoch (train loss,
held-out loss / accuracy / precision / recall / F1), ``hooks.cancelled`` is checked between batches, and
the model and optimizer are checkpointed after every epoch (``torch.save`` of tensors and plain values,
read back with ``weights_only=True``). Shuffling and dropout are seeded per epoch, so a resumed job goes on
as if it had not stopped. The result is a plain HF folder (config with id2label, model.safetensors,
tokenizer files) that the serialization service exports with the tokenizer in the graph.
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
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from aiaas_services.training.paths import TEXT_CHECKPOINT_FILE as CHECKPOINT
from aiaas_services.training.text.data import TextTable
from aiaas_services.training.trainer import Cancelled, Hooks

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


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
    temperature: float = 2.0  # of the soft targets, when there are any
    alpha: float = 0.7  # weight of the soft-target loss against the labels' cross-entropy


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
    """One training run: (model, tokenizer) + table -> result folder, with per-epoch checkpoints in ``job_dir``.
    ``soft_targets`` (rows x labels, the teacher's probabilities at ``config.temperature``) turns the loss
    into ``alpha * T^2 * KL + (1 - alpha) * CE``."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        table: TextTable,
        config: FinetuneConfig,
        job_dir: Path,
        hooks: Hooks | None = None,
        soft_targets: np.ndarray | None = None,
        tokenizer_source: Path | None = None,
        vocab_file: Path | None = None,
    ) -> None:
        self.model, self.tokenizer, self.table, self.config, self.job_dir = model, tokenizer, table, config, job_dir
        self.hooks = hooks or Hooks()
        self.soft = torch.from_numpy(soft_targets).float() if soft_targets is not None else None
        self.tokenizer_source = tokenizer_source  # a base folder whose tokenizer files the result keeps
        self.vocab_file = vocab_file  # or a learned vocabulary (the exported graph's tokenizer reads vocab.txt)
        if config.freeze_encoder:
            for name, parameter in self.model.named_parameters():
                parameter.requires_grad = name.startswith("classifier")
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.train_rows, self.test_rows = split(table, config.test_fraction, config.seed)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    @classmethod
    def from_base(
        cls, base: Path, table: TextTable, config: FinetuneConfig, job_dir: Path, hooks: Hooks | None = None
    ) -> TextClassifierTrainer:
        """Fine-tune the HF folder ``base``: its encoder, a new head for the table's labels, its tokenizer."""
        # transformers: loaded only when a text job runs (heavy)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.manual_seed(config.seed)
        names = table.label_names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForSequenceClassification.from_pretrained(
                str(base),
                local_files_only=True,
                use_safetensors=True,
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                ignore_mismatched_sizes=True,
            )
            tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        return cls(model, tokenizer, table, config, job_dir, hooks, tokenizer_source=base)

    def encode(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """Tokenized rows, padded to the longest and truncated at max_length."""
        texts = [self.table.texts[i] for i in rows]
        return dict(
            self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt")
        )

    def logits(self, rows: list[int]) -> np.ndarray:
        """Logits for the given rows (eval mode, no gradients)."""
        self.model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 64):
                out.append(self.model(**self.encode(rows[start : start + 64])).logits.float().numpy())
        if not out:
            return np.zeros((0, len(self.table.label_names)), np.float32)
        result: np.ndarray = np.concatenate(out)
        return result

    def predict(self, rows: list[int]) -> np.ndarray:
        """Arg-max labels for the given rows."""
        predicted: np.ndarray = self.logits(rows).argmax(-1)
        return predicted

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

    def _loss(self, rows: list[int], labels: torch.Tensor) -> torch.Tensor:
        logits = self.model(**self.encode(rows)).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[rows])
        if self.soft is None:
            return loss
        t, alpha = self.config.temperature, self.config.alpha
        log_student = torch.nn.functional.log_softmax(logits / t, -1)
        kl = torch.nn.functional.kl_div(log_student, self.soft[rows], reduction="batchmean")
        return alpha * t * t * kl + (1 - alpha) * loss

    def fit(self) -> list[dict[str, Any]]:
        """Train the remaining epochs; one record per epoch goes to the hooks."""
        labels = torch.from_numpy(self.table.labels)
        held_out = self.table.labels[self.test_rows]
        while self.epoch < self.config.epochs:
            started = time.perf_counter()
            self.model.train()
            seed = self.config.seed * 100_003 + self.epoch  # per epoch: a resumed run shuffles the same way
            torch.manual_seed(seed)
            order = np.random.default_rng(seed).permutation(self.train_rows)
            total, batches = 0.0, 0
            for start in range(0, len(order), self.config.batch_size):
                if self.hooks.cancelled():
                    raise Cancelled()
                rows = [int(i) for i in order[start : start + self.config.batch_size]]
                loss = self._loss(rows, labels)
                self.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
                total += loss.item()
                batches += 1
            self.epoch += 1
            logits = self.logits(self.test_rows)
            validation = metrics(held_out, logits.argmax(-1))
            validation["loss"] = float(
                torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(held_out)).item()
            )
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
        """The trained HF folder (safetensors only) and the held-out metrics; returns the summary."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder), safe_serialization=True)  # type: ignore[operator]
        if self.tokenizer_source is not None:
            for name in TOKENIZER_FILES:
                if (self.tokenizer_source / name).is_file():
                    shutil.copyfile(self.tokenizer_source / name, folder / name)
        else:
            self.tokenizer.save_pretrained(str(folder))
            if self.vocab_file is not None:
                shutil.copyfile(self.vocab_file, folder / "vocab.txt")
        predicted = self.predict(self.test_rows)
        held_out = self.table.labels[self.test_rows]
        majority = float(np.bincount(held_out).max() / len(held_out))
        classes = list(range(len(self.table.label_names)))
        return {
            "test_metrics": metrics(held_out, predicted),
            "confusion_matrix": confusion_matrix(held_out, predicted, labels=classes).tolist(),
            "majority_baseline": majority,
            "label_names": list(self.table.label_names),
            "epochs_run": self.epoch,
            "num_train": len(self.train_rows),
            "num_test": len(self.test_rows),
        }
