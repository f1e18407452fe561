"""Per-token integrated gradients of a text classifier, in process, on a tiny random BERT (no service)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization.explain import COMPLETENESS_TOLERANCE
from aiaas_services.serialization.explain_text import MAX_CHARS, token_integrated_gradients

WORDS = ["the", "striker", "scored", "a", "goal", "chef", "baked", "bread", "server", "crashed"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, object]:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = tmp_path_factory.mktemp("bert") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    config.num_labels = 3
    return BertForSequenceClassification(config).eval(), BertTokenizer(str(Path(vocab)))


def test_token_attributions_add_up_to_the_logit_difference(classifier: tuple[torch.nn.Module, object]) -> None:
    model, tokenizer = classifier
    done = token_integrated_gradients(model, tokenizer, "The striker scored a goal", None, 32, steps=128)
    result = done.result
    assert done.tokens == ["[CLS]", "the", "striker", "scored", "a", "goal", "[SEP]"]
    assert len(result.attributions) == len(done.tokens) and result.method == "integrated_gradients"
    gap = result.prediction - result.baseline_prediction
    assert result.completeness_error <= COMPLETENESS_TOLERANCE * max(1.0, abs(gap)), (result.completeness_error, gap)
    with torch.no_grad():
        encoded = tokenizer(["the striker scored a goal"], return_tensors="pt")  # type: ignore[operator]
        logits = model.double()(**encoded).logits[0]
    assert result.target == int(logits.argmax()) and result.prediction == pytest.approx(float(logits.max()))
    other = token_integrated_gradients(model, tokenizer, "the chef baked bread", 2, 32, steps=64)
    assert other.result.target == 2 and len(other.tokens) == 6


def test_bad_text_and_steps_are_refused(classifier: tuple[torch.nn.Module, object]) -> None:
    model, tokenizer = classifier
    for text, steps, fragment in (
        ("   ", 64, "must hold a sentence"),
        ("x" * (MAX_CHARS + 1), 64, "at most"),
        ("the goal", 1, "steps must be"),
    ):
        with pytest.raises(InvalidArgument, match=fragment):
            token_integrated_gradients(model, tokenizer, text, None, 32, steps=steps)
    with pytest.raises(InvalidArgument, match="outside the model's 3 outputs"):
        token_integrated_gradients(model, tokenizer, "the goal", 5, 32, steps=8)
