"""A small text classifier from scratch, optionally distilled from a teacher.

The tokenizer is a WordPiece vocabulary trained with the ``tokenizers`` library on the training split
only (BERT's normalization: lower case, accents stripped), so the exported graph can tokenize with the
same ``BertTokenizer`` op a BERT model uses. The model is an embedding, a bidirectional GRU, a masked
mean and a linear head. Distillation trains it on the teacher's soft targets at temperature ``T``
(KL divergence, scaled by T²) mixed with the hard labels: ``alpha * KL + (1 - alpha) * CE``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from tokenizers import BertWordPieceTokenizer
from torch import nn

from aiaas_services.textmodel import graph
from aiaas_services.training.text.data import TextTable
from aiaas_services.training.text.finetune import metrics
from aiaas_services.training.trainer import Cancelled, Hooks

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """Size and training of the student."""

    vocab_size: int = 2000
    embedding_dim: int = 64
    hidden_size: int = 64
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    max_length: int = 64
    temperature: float = 2.0
    alpha: float = 0.7  # weight of the soft-target loss (0: plain training on the labels)
    seed: int = 0


def train_vocabulary(texts: Sequence[str], vocab_size: int) -> list[str]:
    """A WordPiece vocabulary (BERT special tokens first) learned from ``texts``."""
    tokenizer = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    tokenizer.train_from_iterator(list(texts), vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False)
    vocab = tokenizer.get_vocab()
    return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]


class Student(nn.Module):
    """Embedding -> BiGRU -> masked mean -> linear; takes the same inputs as a BERT encoder."""

    def __init__(self, vocab_size: int, num_labels: int, embedding_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, num_labels)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embedding(input_ids))
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)  # type: ignore[no-any-return]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(input_ids, attention_mask)
        return logits, torch.softmax(logits, dim=-1)


class StudentTrainer:
    """Trains a Student on a table's training rows, with or without a teacher's soft targets."""

    def __init__(self, table: TextTable, train_rows: list[int], test_rows: list[int], config: StudentConfig) -> None:
        torch.manual_seed(config.seed)
        self.table, self.train_rows, self.test_rows, self.config = table, train_rows, test_rows, config
        self.vocab = train_vocabulary([table.texts[i] for i in train_rows], config.vocab_size)
        self.tokenizer = BertWordPieceTokenizer({t: i for i, t in enumerate(self.vocab)}, lowercase=True)
        self.tokenizer.enable_truncation(config.max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.model = Student(len(self.vocab), len(table.label_names), config.embedding_dim, config.hidden_size)

    def encode(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer.encode_batch([self.table.texts[i] for i in rows])
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
        return ids, mask

    def fit(
        self, teacher_probs: Callable[[list[int]], np.ndarray] | None = None, hooks: Hooks | None = None
    ) -> list[dict[str, Any]]:
        """Train; ``teacher_probs(rows)`` gives the teacher's temperature-softened probabilities."""
        hooks = hooks or Hooks()
        config = self.config
        soft = torch.from_numpy(teacher_probs(self.train_rows)).float() if teacher_probs else None
        position = {row: i for i, row in enumerate(self.train_rows)}
        labels = torch.from_numpy(self.table.labels)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        rng = np.random.default_rng(config.seed)
        history = []
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            self.model.train()
            total = 0.0
            order = [int(i) for i in rng.permutation(self.train_rows)]
            for start in range(0, len(order), config.batch_size):
                if hooks.cancelled():
                    raise Cancelled()
                rows = order[start : start + config.batch_size]
                logits = self.model.logits(*self.encode(rows))
                loss = nn.functional.cross_entropy(logits, labels[rows])
                if soft is not None:
                    target = soft[[position[r] for r in rows]]
                    kl = nn.functional.kl_div(
                        nn.functional.log_softmax(logits / config.temperature, -1), target, reduction="batchmean"
                    )
                    loss = config.alpha * config.temperature**2 * kl + (1 - config.alpha) * loss
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += loss.item()
            record = {
                "epoch": epoch,
                "train": {"loss": total / max(1, len(order) // config.batch_size)},
                "validation": metrics(self.table.labels[self.test_rows], self.predict(self.test_rows)),
                "seconds": time.perf_counter() - started,
            }
            history.append(record)
            hooks.on_epoch(record)
        return history

    def predict(self, rows: Sequence[int]) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            predicted: np.ndarray = self.model.logits(*self.encode(rows)).argmax(-1).numpy()
        return predicted

    def export(self, workdir: Path) -> Path:
        """The student as a string graph: the same in-graph BertTokenizer with its own vocabulary."""
        workdir.mkdir(parents=True, exist_ok=True)
        encoder_path = workdir / "student-encoder.onnx"
        example = (
            torch.ones(2, 8, dtype=torch.long),
            torch.ones(2, 8, dtype=torch.long),
            torch.zeros(2, 8, dtype=torch.long),
        )
        names = list(graph.ENCODER_INPUTS)
        axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}, "probabilities": {0: "batch"}}
        torch.onnx.export(
            self.model.eval(), example, str(encoder_path), dynamo=False, input_names=names,
            output_names=["logits", "probabilities"], dynamic_axes=axes, opset_version=graph.OPSET,
        )  # fmt: skip
        casing = {"do_lower_case": 1, "strip_accents": 1}
        model = graph.with_tokenizer(
            onnx.load(str(encoder_path)), "\n".join(self.vocab) + "\n", casing, self.config.max_length,
            self.table.label_names,
        )  # fmt: skip
        path = workdir / "student.onnx"
        onnx.save(model, str(path))
        encoder_path.unlink()
        return path


def teacher_soft_targets(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], temperature: float, max_length: int = 128
) -> np.ndarray:
    """A transformers classifier's probabilities at ``temperature`` (the distillation targets)."""
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = list(texts[start : start + 64])
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            parts.append(torch.softmax(model(**encoded).logits / temperature, -1).numpy())
    return np.concatenate(parts)


def latency_ms(run: Callable[[], Any], repeats: int = 5) -> float:
    """Median ms of ``run()`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))
