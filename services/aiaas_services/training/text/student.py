"""A small text classifier from scratch (the cheap option), and what distilling a teacher into it needs.

The tokenizer is a WordPiece vocabulary trained with the ``tokenizers`` library on the training split
only (BERT's normalization: lower case, accents stripped). The model is a small BERT
(``BertForSequenceClassification`` with a few narrow layers and a position table of ``max_length``), so
the student is an HF folder like its teacher: registered as format hf, exported by the serialization
service with the same in-graph ``BertTokenizer`` and proven against transformers like any other.
Distillation trains it on the teacher's temperature-softened probabilities (``finetune.py`` mixes
``alpha * T^2 * KL`` with ``(1 - alpha) * CE`` on the labels).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Characters every student vocabulary holds, alone and as a word continuation (##c): printable ASCII and the
# Latin-1 letters that lower-casing and accent stripping leave. Without them a word with one unseen
# character is a whole-word [UNK] in transformers' WordPiece but not in the in-graph tokenizer op, and the
# exported graph would disagree with the model it was proven against on such words.
ALPHABET = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()] + ["ß", "æ", "ð", "ø", "þ", "\u0131", "œ", "ł"]


@dataclasses.dataclass(frozen=True)
class StudentShape:
    """Size of the student."""

    vocab_size: int = 2000
    hidden_size: int = 64
    layers: int = 2
    heads: int = 2
    max_length: int = 64


def train_vocabulary(texts: Sequence[str], vocab_size: int) -> list[str]:
    """A WordPiece vocabulary (BERT special tokens first) learned from ``texts``, plus ``ALPHABET``."""
    # tokenizers/transformers: loaded only when a distillation job runs (heavy)
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    tokenizer.train_from_iterator(list(texts), vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False)
    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    known = set(tokens)
    return tokens + [t for c in ALPHABET for t in (c, "##" + c) if t not in known]


def build_student(
    vocab_file: Path, label_names: Sequence[str], shape: StudentShape, seed: int
) -> tuple[torch.nn.Module, Any]:
    """A freshly initialized small BERT classifier and the BERT tokenizer of ``vocab_file``."""
    # transformers: see train_vocabulary
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tokens = [line for line in vocab_file.read_text("utf-8").splitlines() if line]
    fields: dict[str, Any] = {
        "vocab_size": len(tokens),
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": 4 * shape.hidden_size,
        "max_position_embeddings": shape.max_length,
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
        "architectures": ["BertForSequenceClassification"],
    }
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertForSequenceClassification(BertConfig(**fields))
        # BERT's normalization, as the vocabulary was learned with (accents follow lower-casing)
        tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    tokenizer.model_max_length = shape.max_length
    return model, tokenizer


def teacher_soft_targets(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], temperature: float, max_length: int = 128
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


def parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def latency_ms(run: Callable[[], Any], repeats: int = 5) -> float:
    """Median ms of ``run()`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))
