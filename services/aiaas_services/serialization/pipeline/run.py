"""The whole pipeline for one source: export (or take) the FP32 graph, then make and prove each variant.

Two entry points share the variant loop: ``from_module`` (a rebuilt PyTorch checkpoint: the reference is
PyTorch itself) and ``from_onnx`` (an imported FP32 ONNX model: the reference is that model under ONNX
Runtime, the best truth there is for it).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from aiaas_services.serialization.pipeline import export, proof
from aiaas_services.serialization.pipeline import variants as makers


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """What to make and how (already validated)."""

    variants: tuple[str, ...] = ("fp32",)
    opset: int = export.DEFAULT_OPSET
    pruning_sparsity: float = 0.0
    quantization: makers.QuantizationSettings = makers.QuantizationSettings()
    tolerances: Mapping[str, proof.Tolerance] = dataclasses.field(default_factory=dict)
    exporter: str = "auto"
    optimization: str = "basic"
    latency_repeats: int = 30
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class ProofData:
    """Held-out data for the proof and training data for calibration (RAW features, float32)."""

    x_calibration: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray | None
    task: str  # classification, regression, vae, or "" when unknown (imported model without labels)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The FP32 graph and the reference outputs every variant is held against."""

    fp32: Path
    reference: np.ndarray
    export_settings: dict[str, str]


@dataclasses.dataclass(frozen=True)
class VariantResult:
    """A made and proven variant."""

    variant: str
    path: Path
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
    """Prune (optionally), export and check; the pruned module's outputs are the reference."""
    module = module.eval()
    settings: dict[str, str] = {}
    if options.pruning_sparsity:
        reached = export.prune_weights(module, options.pruning_sparsity)
        settings |= {"pruning_sparsity": f"{options.pruning_sparsity:g}", "pruning_reached": f"{reached:.4f}"}
    result = export.export_fp32(module, num_features, workdir, options.opset, options.exporter, options.optimization)
    with torch.no_grad():
        reference = module(torch.from_numpy(data.x_test.astype(np.float32))).double().numpy()
    return Prepared(result.path, reference, settings | result.settings())


def from_onnx(source: Path, data: ProofData, options: PipelineOptions, workdir: Path) -> Prepared:
    """An imported FP32 model is its own reference (ORT outputs of the unmodified file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fp32 = workdir / "fp32.onnx"
    shutil.copyfile(source, fp32)
    reference = proof.run_batched(proof.cpu_session(fp32, options.threads), data.x_test.astype(np.float32))
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
        path = workdir / f"{name}.onnx"
        say(f"making {name}")
        if name == "fp32":
            if path != prepared.fp32:
                shutil.copyfile(prepared.fp32, path)
        elif name == "fp16":
            makers.make_fp16(prepared.fp32, path)
        elif name == "int8-dynamic":
            makers.make_int8_dynamic(prepared.fp32, path, options.quantization)
        elif name == "int8-static":
            makers.make_int8_static(prepared.fp32, path, data.x_calibration, options.quantization)
        else:
            raise ValueError(f"unknown variant {name!r}")
        settings = options.quantization.as_dict(name) | prepared.export_settings
        stamp = dict(metadata or {}) | {"aiaas.variant": name, "aiaas.settings": json.dumps(settings, sort_keys=True)}
        export.set_metadata(path, stamp)
        say(f"proving {name}")
        tolerance = proof.merge_tolerance(proof.default_tolerance(name, data.task), options.tolerances.get(name))
        report = proof.compare(
            name,
            path,
            prepared.reference,
            data.x_test,
            data.y_test,
            data.task,
            tolerance,
            options.latency_repeats,
            options.threads,
        )
        report.preferred_provider = makers.PREFERRED_PROVIDER[name]
        report.settings = settings
        yield VariantResult(name, path, report)
