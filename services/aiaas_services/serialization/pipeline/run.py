"""The whole pipeline for one source: export (or take) the FP32 graph, then make and prove each variant.

Two entry points share the variant loop: ``from_module`` (a rebuilt PyTorch checkpoint: the reference is
PyTorch itself) and ``from_onnx`` (an imported FP32 ONNX model: the reference is that model under ONNX
Runtime, the best truth there is for it). An error in one variant fails that variant, with its reason;
the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
import torch

from aiaas_services.serialization.pipeline import export, limits, proof, search, structured
from aiaas_services.serialization.pipeline import variants as makers

NOT_REPRESENTATIVE = (
    "not proven: {variant} needs representative data to be proven, and this model has none (it was checked on "
    "generated inputs only); upload an .npz with one array per input name and set options.calibration."
    "calibration_data"
)


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """What to make and how (already validated)."""

    variants: tuple[str, ...] = ("fp32",)
    opset: int = export.DEFAULT_OPSET
    pruning_sparsity: float = 0.0
    structured_pruning: float = 0.0  # fraction of hidden units removed per layer (see pipeline/structured.py)
    quantization: makers.QuantizationSettings = makers.QuantizationSettings()
    search_int8: bool = True  # False: exactly ``quantization``, no search
    tolerances: Mapping[str, limits.Tolerance] = dataclasses.field(default_factory=dict)
    exporter: str = "auto"
    optimization: str = "basic"
    latency_repeats: int = 30
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class ProofData:
    """What the proof runs on (one array per input name) and what INT8 calibrates on.

    ``representative`` is False when the inputs were generated: then FP32/FP16 parity is checked on them,
    and quantized variants are rejected as unproven.
    """

    calibration: Mapping[str, np.ndarray]
    proof: Mapping[str, np.ndarray]
    y: np.ndarray | None
    task: str  # classification, regression, vae, or "" when unknown (imported model without labels)
    representative: bool = True
    source: str = "held-out split"


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The FP32 graph and the reference outputs (by output name) every variant is held against."""

    fp32: Path
    reference: dict[str, np.ndarray]
    export_settings: dict[str, str]


@dataclasses.dataclass(frozen=True)
class VariantResult:
    """A made and proven variant (``path`` is None when nothing could be made: the report says why)."""

    variant: str
    path: Path | None
    report: proof.Report


Progress = Callable[[str], None]


def validate_variants(names: list[str]) -> tuple[str, ...]:
    """Known, de-duplicated variant names in request order (default: fp32)."""
    unknown = [n for n in names if n not in makers.VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(makers.VARIANTS)}")
    return tuple(dict.fromkeys(names)) or ("fp32",)


def from_module(
    module: torch.nn.Module, num_features: int, data: ProofData, options: PipelineOptions, workdir: Path
) -> Prepared:
    """Prune (optionally), export and check.

    The reference is the module's outputs after magnitude pruning (a choice of weights the user asked
    for) but before structured pruning: a model with units removed must prove itself against the original.
    """
    module = module.eval()
    settings: dict[str, str] = {}
    original = _outputs(module, data) if options.structured_pruning else None
    if options.pruning_sparsity:
        reached = export.prune_weights(module, options.pruning_sparsity)
        settings |= {"pruning_sparsity": f"{options.pruning_sparsity:g}", "pruning_reached": f"{reached:.4f}"}
        original = _outputs(module, data) if options.structured_pruning else None
    if options.structured_pruning:
        settings |= structured.prune_model(module, options.structured_pruning).settings()
    result = export.export_fp32(module, num_features, workdir, options.opset, options.exporter, options.optimization)
    names = [o.name for o in onnx.load(str(result.path), load_external_data=False).graph.output]
    tensors = original if original is not None else _outputs(module, data)
    reference = {name: t.double().numpy() for name, t in zip(names, tensors, strict=False)}
    return Prepared(result.path, reference, settings | result.settings())


def _outputs(module: torch.nn.Module, data: ProofData) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.asarray(a, np.float32)) for a in data.proof.values()))
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def from_onnx(source: Path, data: ProofData, options: PipelineOptions, workdir: Path) -> Prepared:
    """An imported FP32 model is its own reference (ORT outputs of the unmodified file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fp32 = workdir / "fp32.onnx"
    shutil.copyfile(source, fp32)
    reference = proof.run_batched(proof.cpu_session(fp32, options.threads), data.proof)
    return Prepared(fp32, reference, {"exporter": "imported"})


def make_and_prove(
    prepared: Prepared,
    data: ProofData,
    options: PipelineOptions,
    workdir: Path,
    metadata: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Iterator[VariantResult]:
    """Make each requested variant, stamp its metadata, prove it; yields as each one is done."""
    say = progress or (lambda _message: None)
    for name in options.variants:
        say(f"making {name}")
        try:
            result = _one_variant(name, prepared, data, options, workdir, metadata or {}, say)
        except Exception as exc:  # noqa: BLE001 - the variant fails whole, with its reason; the next one goes on
            first = (str(exc).splitlines() or [""])[0][:500]
            report = proof.Report(variant=name, failed=True, reason=f"{name} failed: {type(exc).__name__}: {first}")
            report.preferred_provider = makers.PREFERRED_PROVIDER[name]
            result = VariantResult(name, None, report)
        result.report.settings["proof_data"] = data.source
        yield result


def _one_variant(
    name: str,
    prepared: Prepared,
    data: ProofData,
    options: PipelineOptions,
    workdir: Path,
    metadata: Mapping[str, str],
    say: Progress,
) -> VariantResult:
    path = workdir / f"{name}.onnx"
    # every variant of a structurally pruned model is a different function from the original it is held
    # against: judged by what it is used for (limits.py's "pruned" row)
    kind = "pruned" if options.structured_pruning else name
    tolerance = limits.merge_tolerance(limits.default_tolerance(kind, data.task), options.tolerances.get(name))
    quantized = name.startswith("int8")
    if quantized and not data.representative:
        report = proof.Report(variant=name, reason=NOT_REPRESENTATIVE.format(variant=name), limits=tolerance.as_dict())
        report.preferred_provider = makers.PREFERRED_PROVIDER[name]
        report.settings = options.quantization.as_dict(name)
        return VariantResult(name, None, report)

    def prove(candidate: Path, settings: makers.QuantizationSettings) -> proof.Report:
        say(f"proving {name}" + (f" ({_short(settings, name)})" if quantized else ""))
        report = proof.compare(
            name,
            candidate,
            prepared.reference,
            data.proof,
            data.y,
            data.task,
            tolerance,
            options.latency_repeats,
            options.threads,
        )
        report.settings = settings.as_dict(name)
        return report

    if name == "fp32":
        if path != prepared.fp32:
            shutil.copyfile(prepared.fp32, path)
        report = prove(path, options.quantization)
    elif name == "fp16":
        makers.make_fp16(prepared.fp32, path)
        report = prove(path, options.quantization)
    elif quantized:

        def make(settings: makers.QuantizationSettings, destination: Path) -> None:
            say(f"quantizing {name} ({_short(settings, name)})")
            if name == "int8-dynamic":
                makers.make_int8_dynamic(prepared.fp32, destination, settings)
            else:
                makers.make_int8_static(prepared.fp32, destination, data.calibration, settings)

        def versus_fp32(candidate: Path) -> float:
            say(f"timing {name} against fp32 at batch 32")
            repeats = max(5, options.latency_repeats // 3)
            return proof.interleaved_ratio(candidate, prepared.fp32, data.proof, 32, repeats, options.threads)

        if options.search_int8:
            tried = search.candidates(name, options.quantization, makers.cpu_has_vnni())
            report = search.search(name, tried, workdir, path, make, prove, versus_fp32)
        else:  # exactly what was asked for
            make(options.quantization, path)
            report = prove(path, options.quantization)
    else:
        raise ValueError(f"unknown variant {name!r}")
    settings = report.settings | prepared.export_settings
    stamp = dict(metadata) | {"aiaas.variant": name, "aiaas.settings": json.dumps(settings, sort_keys=True)}
    export.set_metadata(path, stamp)
    report.size_bytes = path.stat().st_size
    report.preferred_provider = makers.PREFERRED_PROVIDER[name]
    report.settings = settings
    return VariantResult(name, path, report)


def _short(settings: makers.QuantizationSettings, variant: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.as_dict(variant).items() if k not in ("variant", "weight_type"))
