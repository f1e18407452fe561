"""The text part of an export job: fetch an HF checkpoint, export it with its tokenizer, make and prove variants.

Each variant is made from the FP32 string graph (FP16 and INT8 rewrite the encoder's float ops; the
tokenizer's integer and string ops are left alone) and proven on strings against transformers itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from aiaas_services.serialization.pipeline import export, proof, run
from aiaas_services.serialization.pipeline import variants as makers
from aiaas_services.serialization.text import prove, sentences
from aiaas_services.textmodel import graph
from aiaas_services.textmodel import signature as sig
from aiaas_services.textmodel.folder import HfFolder, vet

TextModel = graph.TextModel
PROOF_SOURCE = "built-in proof sentences (reference: transformers)"


@dataclasses.dataclass(frozen=True)
class TextProof:
    """What the variants are held against."""

    texts: tuple[str, ...]
    reference: np.ndarray
    labels: np.ndarray | None


def output_of(task: str) -> str:
    """The output the proof compares: the embedding, or the class probabilities."""
    return sig.EMBEDDING if task == "embedding" else sig.PROBABILITIES


def checked_folder(folder: Path, names: list[str], task: str) -> HfFolder:
    """The downloaded folder, vetted again (the registry could hold anything under format HF)."""
    return vet(folder, names, [], task)


def prepare(
    folder: HfFolder, task: str, workdir: Path, say: Callable[[str], None]
) -> tuple[graph.TextModel, TextProof]:
    """Export the FP32 string graph and compute transformers' reference outputs on the proof sentences."""
    say("exporting the encoder and putting the tokenizer in the graph")
    model = graph.export_text_model(folder.path, task, folder.labels, folder.max_positions, workdir)
    say("computing transformers' reference outputs on the proof sentences")
    reference_model = graph.load_transformers(folder.path, task, attention="sdpa")
    texts = sentences.PROOF_SENTENCES
    reference = prove.reference_outputs(reference_model, folder.path, task, texts, model.max_length)
    return model, TextProof(texts, reference, None)


def make_and_prove(
    model: graph.TextModel,
    data: TextProof,
    options: run.PipelineOptions,
    workdir: Path,
    metadata: dict[str, str],
    say: Callable[[str], None],
) -> Iterator[run.VariantResult]:
    """Each requested variant, made from the FP32 graph and proven; a variant that cannot be made is
    reported REJECTED with the reason."""
    for name in options.variants:
        path = workdir / f"{name}.onnx"
        say(f"making {name}")
        settings = options.quantization.as_dict(name) | model.settings()
        try:
            if name == "fp32":
                if path != model.path:
                    path.write_bytes(model.path.read_bytes())
            elif name == "fp16":
                makers.make_fp16(model.path, path)
            elif name == "int8-dynamic":
                makers.make_int8_dynamic(model.path, path, options.quantization)
            else:
                raise ValueError(f"{name} is not offered for text models yet (fp32, fp16, int8-dynamic are)")
            stamp = metadata | {"aiaas.variant": name, "aiaas.settings": json.dumps(settings, sort_keys=True)}
            export.set_metadata(path, stamp)
            say(f"proving {name} on {len(data.texts)} sentences")
            report = prove.prove(
                name,
                path,
                model.task,
                data.texts,
                data.reference,
                data.labels,
                options.latency_repeats,
                options.threads,
            )
        except Exception as exc:  # noqa: BLE001 - the variant fails whole, with its reason; the next one goes on
            first = (str(exc).splitlines() or [""])[0][:300]
            report = proof.Report(variant=name, failed=True, reason=f"{name} could not be made: {first}")
        report.preferred_provider = makers.PREFERRED_PROVIDER[name]
        report.settings = settings | {"proof_data": PROOF_SOURCE}
        yield run.VariantResult(name, None if report.failed else path, report)
