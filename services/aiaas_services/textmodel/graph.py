"""Hugging Face folder -> one ONNX graph that takes UTF-8 strings: tokenizer, encoder and head inside.

The encoder (transformers' BERT, with mean pooling + L2 normalization for ``embedding``, or logits +
softmax for ``sequence-classification``) is exported with token-id inputs; then the tokenizer is put in
front of it in the same graph: onnxruntime-extensions' ``BertTokenizer`` (WordPiece, the folder's
vocab.txt and casing) inside a ``Loop`` over the batch, each row padded to ``max_length`` and the batch
cut back to its longest row. A classifier also gets ArgMax + a Gather over its label names, so it
answers the label as BYTES. Serving needs ONNX Runtime with the extensions' op library, no Python.

Strings longer than ``max_length`` tokens are truncated (the tokens past it are dropped, [SEP] kept),
exactly as ``tokenizer(..., truncation=True, max_length=max_length)`` does.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from aiaas_services.textmodel import signature as sig
from aiaas_services.textmodel.folder import FolderRefused

CONTRIB = "ai.onnx.contrib"
OPSET = 18
IR_VERSION = 10  # what onnxruntime 1.31 reads
DEFAULT_MAX_LENGTH = 256
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclasses.dataclass(frozen=True)
class TextModel:
    """The exported graph and what it was made with."""

    path: Path
    task: str
    max_length: int
    labels: tuple[str, ...]

    def settings(self) -> dict[str, str]:
        return {"exporter": "torchscript+tokenizer", "opset": str(OPSET), "max_length": str(self.max_length)}


class Encoder(torch.nn.Module):
    """Token ids -> what the task serves (the part of the graph that transformers' weights run)."""

    def __init__(self, model: torch.nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if self.task == "embedding":
            return mean_pool(out.last_hidden_state, attention_mask)
        logits = out.logits
        return logits, torch.softmax(logits, dim=-1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' vectors, L2-normalized (sentence-transformers' recipe)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def load_transformers(folder: Path, task: str, attention: str = "eager") -> torch.nn.Module:
    """The folder's model under transformers, offline, in eval mode; FolderRefused when it does not load."""
    # transformers: loaded only when a Hugging Face folder is exported or proved (heavy)
    from transformers import AutoModel, AutoModelForSequenceClassification

    cls = AutoModel if task == "embedding" else AutoModelForSequenceClassification
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True, attn_implementation=attention
            )
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        raise FolderRefused(f"transformers cannot load the folder as {task}: {type(exc).__name__}: {first}") from exc
    loaded: torch.nn.Module = model.eval()
    return loaded


def max_length_of(folder: Path, max_positions: int) -> int:
    """sentence-transformers' max_seq_length when the folder has one, else min(256, the position table)."""
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        try:
            value = int(json.loads(config.read_text("utf-8")).get("max_seq_length") or 0)
        except (ValueError, TypeError, AttributeError):
            value = 0
        if value > 0:
            return min(value, max_positions)
    return min(DEFAULT_MAX_LENGTH, max_positions)


def tokenizer_settings(folder: Path) -> dict[str, int]:
    """Casing from tokenizer_config.json (BERT's defaults: lower-case, accents stripped when lower-casing)."""
    config: dict[str, Any] = {}
    path = folder / "tokenizer_config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text("utf-8"))
        except ValueError:
            config = {}
    lower = bool(config.get("do_lower_case", True))
    strip = config.get("strip_accents")
    return {"do_lower_case": int(lower), "strip_accents": int(lower if strip is None else bool(strip))}


def export_text_model(
    folder: Path, task: str, labels: tuple[str, ...], max_positions: int, workdir: Path, max_length: int = 0
) -> TextModel:
    """Export ``folder`` for ``task`` to ``workdir/fp32.onnx`` with the tokenizer in the graph."""
    workdir.mkdir(parents=True, exist_ok=True)
    max_length = max_length or max_length_of(folder, max_positions)
    module = Encoder(load_transformers(folder, task), task).eval()
    encoder_path = workdir / "encoder.onnx"
    example = (
        torch.ones(2, 8, dtype=torch.long),
        torch.ones(2, 8, dtype=torch.long),
        torch.zeros(2, 8, dtype=torch.long),
    )
    outputs = [sig.EMBEDDING] if task == "embedding" else [sig.LOGITS, sig.PROBABILITIES]
    axes = {name: {0: "batch", 1: "sequence"} for name in ENCODER_INPUTS} | {name: {0: "batch"} for name in outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(encoder_path),
            dynamo=False,
            input_names=list(ENCODER_INPUTS),
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    encoder = onnx.load(str(encoder_path))
    vocab = (folder / "vocab.txt").read_text("utf-8")
    model = with_tokenizer(
        encoder, vocab, tokenizer_settings(folder), max_length, labels if task != "embedding" else ()
    )
    path = workdir / "fp32.onnx"
    onnx.save(model, str(path))
    encoder_path.unlink()
    return TextModel(path, task, max_length, labels)


def with_tokenizer(
    encoder: onnx.ModelProto, vocab: str, casing: dict[str, int], max_length: int, labels: tuple[str, ...]
) -> onnx.ModelProto:
    """``encoder`` (token-id inputs) with a string input and the tokenizer (and label lookup) in the graph."""
    graph = encoder.graph
    wanted = [i.name for i in graph.input]
    missing = [n for n in wanted if n not in ENCODER_INPUTS]
    if missing:
        raise ValueError(f"the encoder takes unexpected inputs {missing}")
    nodes = _tokenizer_nodes(vocab, casing, max_length, wanted)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(sig.TEXT_INPUT, TensorProto.STRING, ["batch"]))
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    if labels:
        names = numpy_helper.from_array(np.array([s.encode() for s in labels], dtype=object), "label_names")
        graph.initializer.append(names)
        graph.node.extend(
            [
                helper.make_node("ArgMax", [sig.LOGITS], ["label_index"], axis=1, keepdims=0),
                helper.make_node("Gather", ["label_names", "label_index"], [sig.LABEL], axis=0),
            ]
        )
        graph.output.append(helper.make_tensor_value_info(sig.LABEL, TensorProto.STRING, ["batch"]))
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"
    del encoder.opset_import[:]
    encoder.opset_import.extend([helper.make_opsetid("", OPSET), helper.make_opsetid(CONTRIB, 1)])
    encoder.ir_version = min(encoder.ir_version, IR_VERSION)
    return encoder


def _tokenizer_nodes(vocab: str, casing: dict[str, int], max_length: int, wanted: list[str]) -> list[onnx.NodeProto]:
    """Loop over the strings: BertTokenizer each, pad to max_length; then cut to the longest row."""
    const = helper.make_node
    int64 = TensorProto.INT64

    def scalar_const(name: str, value: int) -> onnx.NodeProto:
        return const("Constant", [], [name], value=helper.make_tensor(name, int64, [1], [value]))

    body_nodes = [
        const("Unsqueeze", ["i", "axis0"], ["row"]),
        const("Gather", [sig.TEXT_INPUT, "row"], ["one"], axis=0),
        const(
            "BertTokenizer",
            ["one"],
            ["ids", "types", "mask"],
            domain=CONTRIB,
            vocab_file=vocab,
            do_lower_case=casing["do_lower_case"],
            strip_accents=casing["strip_accents"],
            max_length=max_length,
            truncation_strategy_name="longest_first",
        ),
        const("Shape", ["ids"], ["length"]),
        const("Sub", ["max_len", "length"], ["pad_right"]),
        const("Concat", ["zero", "pad_right"], ["pads"], axis=0),
        const("Pad", ["ids", "pads", "zero_value"], ["ids_row"]),
        const("Pad", ["types", "pads", "zero_value"], ["types_row"]),
        const("Pad", ["mask", "pads", "zero_value"], ["mask_row"]),
        const("Identity", ["cond"], ["cond_out"]),
    ]
    row = ["max_len_row"]
    body = helper.make_graph(
        body_nodes,
        "tokenize_one",
        [
            helper.make_tensor_value_info("i", int64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("ids_row", int64, row),
            helper.make_tensor_value_info("types_row", int64, row),
            helper.make_tensor_value_info("mask_row", int64, row),
        ],
    )
    outer = [
        scalar_const("axis0", 0),
        scalar_const("zero", 0),
        scalar_const("max_len", max_length),
        const("Constant", [], ["zero_value"], value=helper.make_tensor("zero_value", int64, [], [0])),
        const("Constant", [], ["true"], value=helper.make_tensor("true", TensorProto.BOOL, [], [True])),
        const("Shape", [sig.TEXT_INPUT], ["count_1d"]),
        const("Squeeze", ["count_1d"], ["count"]),
        const("Loop", ["count", "true"], ["ids_padded", "types_padded", "mask_padded"], body=body),
        const("ReduceSum", ["mask_padded", "axis1"], ["lengths"], keepdims=0),
        const("ReduceMax", ["lengths"], ["longest"], keepdims=1),
        scalar_const("axis1", 1),
    ]
    # ReduceSum's axes constant must come before it
    outer.insert(0, outer.pop())
    sources = {"input_ids": "ids_padded", "token_type_ids": "types_padded", "attention_mask": "mask_padded"}
    for name in wanted:
        outer.append(const("Slice", [sources[name], "zero", "longest", "axis1"], [name]))
    return outer
