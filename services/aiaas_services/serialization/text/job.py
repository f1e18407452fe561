"""The text part of an export job: fetch an HF checkpoint, export it with its tokenizer, make and prove variants.

Each variant is made from the FP32 string graph (FP16 and INT8 rewrite the encoder's float ops; the
tokenizer's integer and string ops are left alone) and proven on strings against transformers itself.
INT8 variants are chosen by a proof-gated search over ``quantize.candidates`` (or made exactly as asked
with fixed quantization); int8-static calibrates on sentences held out from the proof (the user's own
when the request names them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from aiaas_services.serialization.pipeline import export, limits, proof, run, search
from aiaas_services.serialization.pipeline import variants as makers
from aiaas_services.serialization.text import calibration as held_out
from aiaas_services.serialization.text import prove, quantize, sentences
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
    calibration: tuple[str, ...] = held_out.CALIBRATION_SENTENCES
    calibration_source: str = held_out.SOURCE


def output_of(task: str) -> str:
    """The output the proof compares: the embedding, or the class probabilities."""
    return sig.EMBEDDING if task == "embedding" else sig.PROBABILITIES


def checked_folder(folder: Path, names: list[str], task: str) -> HfFolder:
    """The downloaded folder, vetted again (the registry could hold anything under format HF)."""
    return vet(folder, names, [], task)


def prepare(
    folder: HfFolder,
    task: str,
    workdir: Path,
    say: Callable[[str], None],
    calibration_sentences: tuple[tuple[str, ...], str] | None = None,
) -> tuple[graph.TextModel, TextProof]:
    """Export the FP32 string graph and compute transformers' reference outputs on the proof sentences;
    ``calibration_sentences`` (sentences, where from) replace the built-in calibration set."""
    say("exporting the encoder and putting the tokenizer in the graph")
    model = graph.export_text_model(folder.path, task, folder.labels, folder.max_positions, workdir)
    say("computing transformers' reference outputs on the proof sentences")
    reference_model = graph.load_transformers(folder.path, task, attention="sdpa")
    texts = sentences.PROOF_SENTENCES
    reference = prove.reference_outputs(reference_model, folder.path, task, texts, model.max_length)
    if calibration_sentences is None:
        return model, TextProof(texts, reference, None)
    return model, TextProof(texts, reference, None, *calibration_sentences)


def make_and_prove(
    model: graph.TextModel,
    data: TextProof,
    options: run.PipelineOptions,
    workdir: Path,
    metadata: dict[str, str],
    say: Callable[[str], None],
) -> Iterator[run.VariantResult]:
    """Each requested variant, made from the FP32 graph and proven; a variant that cannot be made is
    reported failed with the reason, and the next one goes on."""
    workspace = quantize.Workspace(model.path, workdir, data.calibration)
    for name in options.variants:
        path = workdir / f"{name}.onnx"
        say(f"making {name}")
        tolerance = limits.merge_tolerance(limits.default_tolerance(name, "embedding"), options.tolerances.get(name))

        def check(
            candidate: Path,
            settings: makers.QuantizationSettings,
            name: str = name,
            tolerance: limits.Tolerance = tolerance,
        ) -> proof.Report:
            say(f"proving {name} on {len(data.texts)} sentences")
            report = prove.prove(
                name,
                candidate,
                model.task,
                data.texts,
                data.reference,
                data.labels,
                options.latency_repeats,
                options.threads,
                tolerance,
            )
            report.settings = settings.as_dict(name)
            return report

        try:
            if name == "fp32":
                if path != model.path:
                    path.write_bytes(model.path.read_bytes())
                report = check(path, options.quantization)
            elif name == "fp16":
                makers.make_fp16(model.path, path)
                report = check(path, options.quantization)
            elif name.startswith("int8"):
                report = _int8(name, model, data, options, workspace, path, check, say)
            else:
                raise ValueError(f"{name} is not offered for text models")
            settings = report.settings | model.settings()
            if name == "int8-static":
                settings |= {"calibration_data": data.calibration_source}
            stamp = metadata | {"aiaas.variant": name, "aiaas.settings": json.dumps(settings, sort_keys=True)}
            export.set_metadata(path, stamp)
            report.size_bytes = path.stat().st_size
        except Exception as exc:  # noqa: BLE001 - the variant fails whole, with its reason; the next one goes on
            first = (str(exc).splitlines() or [""])[0][:300]
            report = proof.Report(variant=name, failed=True, reason=f"{name} could not be made: {first}")
            settings = options.quantization.as_dict(name) | model.settings()
        report.preferred_provider = makers.PREFERRED_PROVIDER[name]
        report.settings = settings | {"proof_data": PROOF_SOURCE}
        yield run.VariantResult(name, None if report.failed else path, report)


def _int8(
    name: str,
    model: graph.TextModel,
    data: TextProof,
    options: run.PipelineOptions,
    workspace: quantize.Workspace,
    path: Path,
    check: Callable[[Path, makers.QuantizationSettings], proof.Report],
    say: Callable[[str], None],
) -> proof.Report:
    """The searched INT8 variant (fastest that passes, with the table of what lost), or exactly the
    requested setting with fixed quantization."""

    def make(settings: makers.QuantizationSettings, destination: Path) -> None:
        text = quantize.of(settings)
        say(f"quantizing the encoder of {name} ({_label(text, name)})")
        workspace.make(name, text, destination)

    def versus_fp32(candidate: Path) -> float:
        say(f"timing {name} against fp32 at batch 32")
        repeats = max(5, options.latency_repeats // 3)
        return prove.interleaved_ratio(candidate, model.path, data.texts, 32, repeats, options.threads)

    if not options.search_int8:
        exactly = quantize.of(options.quantization)
        make(exactly, path)
        return check(path, exactly)
    tried = quantize.candidates(name, options.quantization)
    return search.search(name, list(tried), workspace.workdir, path, make, check, versus_fp32)


def _label(settings: quantize.TextQuantization, variant: str) -> str:
    skip = ("variant", "activation_type", "quantized_part", "op_types", "calibration_samples")
    return ", ".join(f"{k}={v}" for k, v in settings.as_dict(variant).items() if k not in skip)
