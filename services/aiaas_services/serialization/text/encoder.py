"""Cut a text graph into its tokenizer, its encoder and its label lookup, and put it back together.

INT8 and graph fusion only ever touch the encoder (token ids in, embedding or logits out): the
tokenizer's ``Loop`` over strings and the classifier's label ``Gather`` are carried over unchanged, so a
variant tokenizes exactly as FP32 does. The cut is found by graph structure: the tokenizer is every node
the encoder's token-id inputs depend on; the encoder is every other node the encoder's outputs depend on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from aiaas_services.textmodel import signature as sig

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
IR_VERSION = 10  # what onnxruntime 1.31 reads


def _ancestors(nodes: Sequence[onnx.NodeProto], targets: Iterable[str]) -> set[int]:
    """Indexes of the nodes ``targets`` depend on (outer-graph edges only)."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    seen: set[int] = set()
    stack = [t for t in targets if t in producer]
    while stack:
        index = producer[stack.pop()]
        if index in seen:
            continue
        seen.add(index)
        stack.extend(name for name in _inputs_of(nodes[index]) if name in producer)
    return seen


def _inputs_of(node: onnx.NodeProto) -> list[str]:
    """A node's inputs, and the outer names its subgraphs (a Loop body) read."""
    names = [n for n in node.input if n]
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            body = attribute.g
            local = {i.name for i in body.input} | {o for n in body.node for o in n.output}
            local |= {i.name for i in body.initializer}
            names += [n for sub in body.node for n in sub.input if n and n not in local]
    return names


def encoder_outputs(model: onnx.ModelProto) -> list[str]:
    """The graph outputs the encoder computes (everything but the label looked up from the logits)."""
    return [o.name for o in model.graph.output if o.name != sig.LABEL]


def encoder_inputs(model: onnx.ModelProto) -> list[str]:
    produced = {o for n in model.graph.node for o in n.output}
    return [name for name in ENCODER_INPUTS if name in produced]


def split(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.NodeProto], list[onnx.NodeProto]]:
    """(encoder model with token-id inputs, tokenizer nodes, label nodes) of a text graph."""
    nodes = list(model.graph.node)
    inputs = encoder_inputs(model)
    if not inputs:
        raise ValueError("not a text graph: no tokenizer output named input_ids/attention_mask/token_type_ids")
    tokenizer = _ancestors(nodes, inputs)
    encoder = _ancestors(nodes, encoder_outputs(model)) - tokenizer
    label = set(range(len(nodes))) - tokenizer - encoder
    encoder_nodes = [nodes[i] for i in sorted(encoder)]
    used = {name for node in encoder_nodes for name in _inputs_of(node)}
    graph = helper.make_graph(
        encoder_nodes,
        "encoder",
        [helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "sequence"]) for name in inputs],
        [o for o in model.graph.output if o.name != sig.LABEL],
        [i for i in model.graph.initializer if i.name in used],
    )
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    encoder_model = helper.make_model(graph, opset_imports=opsets)
    encoder_model.ir_version = model.ir_version
    return encoder_model, [nodes[i] for i in sorted(tokenizer)], [nodes[i] for i in sorted(label)]


def extract(text_graph: Path, destination: Path) -> None:
    """Write the encoder of the text graph at ``text_graph`` to ``destination``."""
    onnx.save(split(onnx.load(str(text_graph)))[0], str(destination))


def rejoin(text_graph: Path, encoder: Path, destination: Path) -> None:
    """The text graph at ``text_graph`` with its encoder replaced by the one at ``encoder`` (same token-id
    inputs and outputs, e.g. quantized or fused): tokenizer and label lookup are kept as they are."""
    model = onnx.load(str(text_graph))
    new = onnx.load(str(encoder))
    _, tokenizer, label = split(model)
    kept = {name for node in tokenizer + label for name in _inputs_of(node)}
    clash = {i.name for i in new.graph.initializer} & kept
    if clash:
        raise ValueError(f"the new encoder's initializers clash with the tokenizer's: {sorted(clash)[:3]}")
    graph = model.graph
    initializers = [i for i in graph.initializer if i.name in kept] + list(new.graph.initializer)
    del graph.node[:]
    graph.node.extend(tokenizer + list(new.graph.node) + label)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.value_info[:]
    graph.value_info.extend(new.graph.value_info)
    versions: dict[str, int] = {}
    for opset in list(model.opset_import) + list(new.opset_import):
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        versions[domain] = max(versions.get(domain, 0), opset.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in versions.items())
    model.ir_version = min(max(model.ir_version, new.ir_version), IR_VERSION)
    onnx.save(model, str(destination))


def tokenizer_model(text_graph: Path) -> onnx.ModelProto:
    """Strings in, the encoder's token-id tensors out: the text graph's tokenizer alone."""
    model = onnx.load(str(text_graph))
    _, tokenizer, _ = split(model)
    inputs = encoder_inputs(model)
    kept = {name for node in tokenizer for name in _inputs_of(node)}
    graph = helper.make_graph(
        tokenizer,
        "tokenizer",
        list(model.graph.input),
        [helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "sequence"]) for name in inputs],
        [i for i in model.graph.initializer if i.name in kept],
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


def token_batches(session: ort.InferenceSession, texts: Sequence[str], batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Token-id feeds for ``texts``, ``batch`` strings each, from a session of ``tokenizer_model``."""
    names = [o.name for o in session.get_outputs()]
    feeds = []
    for start in range(0, len(texts), batch):
        rows = np.array(list(texts[start : start + batch]), dtype=object)
        values = session.run(names, {sig.TEXT_INPUT: rows})
        feeds.append(dict(zip(names, values, strict=True)))
    return feeds
