"""Per-token attributions of a text classifier's prediction: integrated gradients through the token
embeddings of the Hugging Face model (transformers, float64). No gRPC.

The sentence is tokenized as the served graph tokenizes it (truncated to the export's ``max_length``).
The path runs from a baseline where every token but [CLS] and [SEP] is [PAD] to the sentence, in the word
embedding space (positions and segments stay as they are), and each token's attribution is its
embedding's attribution summed over the hidden size. Completeness: the attributions sum to the target
logit's difference from the baseline's, up to the quadrature error (``explain.COMPLETENESS_TOLERANCE``
at the default steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients

from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization.explain import IG_STEPS, MAX_STEPS, Attribution, _target

MAX_CHARS = 10_000
BATCH = 32  # path points per forward pass


@dataclass
class TextAttribution:
    """Attributions of one sentence, token by token."""

    tokens: list[str]
    result: Attribution


def check_text(text: str) -> str:
    """The sentence, or InvalidArgument saying what is wrong with it."""
    if not text.strip():
        raise InvalidArgument("text must hold a sentence (not only spaces)")
    if len(text) > MAX_CHARS:
        raise InvalidArgument(f"text is {len(text)} characters; at most {MAX_CHARS} are explained")
    return text


def token_integrated_gradients(
    model: Any, tokenizer: Any, text: str, target: int | None, max_length: int, steps: int = IG_STEPS
) -> TextAttribution:
    """Integrated gradients of a ``*ForSequenceClassification`` model's logits at one sentence."""
    if not 2 <= steps <= MAX_STEPS:
        raise InvalidArgument(f"steps must be 2..{MAX_STEPS} for integrated gradients, got {steps}")
    encoded = tokenizer([check_text(text)], truncation=True, max_length=max_length, return_tensors="pt")
    ids = encoded["input_ids"]
    special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
    baseline_ids = torch.where(special.bool(), ids[0], torch.tensor(tokenizer.pad_token_id)).unsqueeze(0)
    model = model.double().eval()
    embeddings = model.get_input_embeddings()
    extra = {k: v for k, v in encoded.items() if k in ("attention_mask", "token_type_ids")}

    def forward(embedded: torch.Tensor) -> torch.Tensor:
        batch = {k: v.expand(len(embedded), -1) for k, v in extra.items()}
        logits: torch.Tensor = model(inputs_embeds=embedded, **batch).logits
        return logits

    with torch.no_grad():
        x, base = embeddings(ids).double(), embeddings(baseline_ids).double()
        outputs = forward(torch.cat([x, base])).numpy()
    chosen = _target(outputs[:1], target)
    attributions = IntegratedGradients(forward).attribute(
        x, baselines=base, target=chosen, n_steps=steps, method="gausslegendre", internal_batch_size=BATCH
    )
    per_token = attributions.detach().sum(dim=-1).reshape(-1).numpy().astype(np.float64)
    result = Attribution(
        "integrated_gradients", chosen, per_token, float(outputs[0, chosen]), float(outputs[1, chosen])
    )
    return TextAttribution(tokenizer.convert_ids_to_tokens(ids[0].tolist()), result)
