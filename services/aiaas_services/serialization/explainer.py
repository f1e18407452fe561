"""Which model explains a version, fetched from the registry and kept warm for the next calls.

A PyTorch checkpoint is explained by integrated gradients on itself; an ONNX version that an export made
(its ``source`` tag names the checkpoint) by integrated gradients on that checkpoint, the PyTorch original;
an imported ONNX model, which has no original, by Kernel SHAP on its graph. The maths is in ``explain``;
the work runs in a thread, never on the inference service.
"""

from __future__ import annotations

import asyncio
import collections
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch

from aiaas.client.registry import RegistryClient
from aiaas.wire import ONNX, PYTORCH_CHECKPOINT
from aiaas_services.modelzoo import SpecError, build_module, validate_spec
from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.serialization import explain
from aiaas_services.serialization.records import Ref
from aiaas_services.serialization.registration import Source, find_version

METHODS = ("", "integrated_gradients", "kernel_shap")
CACHED = 8


@dataclass
class Explained:
    """An attribution and the versions it is about."""

    model_name: str
    version: int
    explained_model: str
    explained_version: int
    result: explain.Attribution


class Explainer:
    """Resolves versions through the registry; caches built modules and ONNX sessions (LRU)."""

    def __init__(self, registry: RegistryClient, workdir: Path) -> None:
        self.registry = registry
        self.workdir = workdir
        self._cache: collections.OrderedDict[tuple[str, int, str], Any] = collections.OrderedDict()

    async def _checkpoint_of(self, version: Source) -> Source | None:
        if version.format == PYTORCH_CHECKPOINT:
            return version
        name, _, number = version.parent.rpartition(":")
        if not name or not number.isdigit():
            return None
        try:
            parent = await find_version(self.registry, (name, int(number)))
        except NotFound:
            return None
        return parent if parent.format == PYTORCH_CHECKPOINT else None

    async def _load(self, version: Source, kind: str) -> Any:
        key = (version.model_name, version.version, kind)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ref = (version.model_name, version.version)
        if kind == "module":
            try:
                spec = validate_spec(json.loads(await self.registry.download_bytes(ref, "spec.json")))
                module = build_module(spec)
                module.load_state_dict(
                    safetensors.torch.load(await self.registry.download_bytes(ref, "weights.safetensors"))
                )
            except (SpecError, ValueError, RuntimeError) as exc:
                raise FailedPrecondition(f"{ref[0]}:{ref[1]} cannot be rebuilt from its checkpoint: {exc}") from None
            loaded: Any = (module, int(spec["num_features"]))
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(await self.registry.download_bytes(ref, "model.onnx"))
                session = await asyncio.to_thread(explain.onnx_session, path)
            width = session.get_inputs()[0].shape[-1]
            loaded = (session, width if isinstance(width, int) else None)
        self._cache[key] = loaded
        if len(self._cache) > CACHED:
            self._cache.popitem(last=False)
        return loaded

    async def explain(
        self,
        ref: Ref,
        inputs: list[float],
        baseline: list[float],
        target: int | None,
        method: str,
        steps: int,
    ) -> Explained:
        """Attributions of one row's prediction by the version ``ref`` names."""
        if method not in METHODS:
            raise InvalidArgument(f"method must be integrated_gradients or kernel_shap (or empty), got {method!r}")
        if not ref.model_name:
            raise InvalidArgument("ref.model_name is required")
        if not inputs or len(inputs) > 100_000:
            raise InvalidArgument("inputs must hold one row of 1..100000 features")
        if steps < 0:
            raise InvalidArgument("steps must be >= 0 (0 = the method's default)")
        version = await find_version(self.registry, (ref.model_name, ref.selector() or "production"))
        checkpoint = None if method == "kernel_shap" else await self._checkpoint_of(version)
        if checkpoint is not None:
            module, width = await self._load(checkpoint, "module")
            x, b = explain.check_row(inputs, baseline, width)
            result = await asyncio.to_thread(
                explain.integrated_gradients, module, x, b, target, steps or explain.IG_STEPS
            )
            return Explained(version.model_name, version.version, checkpoint.model_name, checkpoint.version, result)
        if method == "integrated_gradients":
            raise FailedPrecondition(
                f"{version.model_name}:{version.version} has no PyTorch original (an imported ONNX model); "
                "use kernel_shap"
            )
        if version.format != ONNX:
            raise FailedPrecondition(f"{version.model_name}:{version.version} is neither a checkpoint nor ONNX")
        session, width = await self._load(version, "onnx")
        x, b = explain.check_row(inputs, baseline, width or len(inputs))
        result = await asyncio.to_thread(explain.kernel_shap, session, x, b, target, steps or explain.SHAP_SAMPLES)
        return Explained(version.model_name, version.version, version.model_name, version.version, result)
