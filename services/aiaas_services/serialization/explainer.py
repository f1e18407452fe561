"""Which model explains a version, fetched from the registry and kept warm for the next calls.

A PyTorch checkpoint is explained by integrated gradients on itself; an ONNX version that an export made
(its ``source`` tag names the checkpoint) by integrated gradients on that checkpoint, the PyTorch original;
an imported ONNX model, which has no original, by Kernel SHAP on its graph. A sentence for a text
classifier is explained token by token on its Hugging Face checkpoint (the version, or the one its export
came from). The maths is in ``explain`` and ``explain_text``; the work runs in a thread, never on the
inference service.
"""

from __future__ import annotations

import asyncio
import collections
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch

from aiaas.client.registry import RegistryClient
from aiaas.wire import HF, ONNX, PYTORCH_CHECKPOINT
from aiaas_services.modelzoo import SpecError, build_module, validate_spec
from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.serialization import explain, explain_text
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
    tokens: list[str] = field(default_factory=list)  # a text request's tokens, one per attribution


class Explainer:
    """Resolves versions through the registry; caches built modules and ONNX sessions (LRU)."""

    def __init__(self, registry: RegistryClient, workdir: Path) -> None:
        self.registry = registry
        self.workdir = workdir
        self._cache: collections.OrderedDict[tuple[str, int, str], Any] = collections.OrderedDict()

    async def _checkpoint_of(self, version: Source, kind: int = PYTORCH_CHECKPOINT) -> Source | None:
        """The version itself when it is of format ``kind``, else the one its ``source`` tag names if it is."""
        if version.format == kind:
            return version
        name, _, number = version.parent.rpartition(":")
        if not name or not number.isdigit():
            return None
        try:
            parent = await find_version(self.registry, (name, int(number)))
        except NotFound:
            return None
        return parent if parent.format == kind else None

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
        elif kind == "hf":
            loaded = await self._load_folder(version)
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

    async def _load_folder(self, version: Source) -> tuple[Any, Any, int]:
        """(transformers model, tokenizer, the export's max_length) of an HF checkpoint."""
        from transformers import AutoTokenizer

        from aiaas_services.textmodel import graph
        from aiaas_services.textmodel.folder import FolderRefused, vet

        self.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            folder = Path(tmp)
            names = [n for n in version.artifacts if not n.endswith((".png", "reference.json"))]
            for name in names:
                await self.registry.download_to((version.model_name, version.version), name, folder / name)

            def load() -> tuple[Any, Any, int]:
                checked = vet(folder, names, [], version.task)
                model = graph.load_transformers(folder, version.task, attention="eager")
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                return model.double().eval(), tokenizer, graph.max_length_of(folder, checked.max_positions)

            try:
                return await asyncio.to_thread(load)
            except FolderRefused as exc:
                raise FailedPrecondition(f"{version.model_name}:{version.version} cannot be loaded: {exc}") from None

    async def explain_text(self, ref: Ref, text: str, target: int | None, method: str, steps: int) -> Explained:
        """Per-token attributions of a sentence's prediction by the text classifier ``ref`` names."""
        if method == "kernel_shap":
            raise InvalidArgument("text is explained by integrated_gradients (per token); kernel_shap takes inputs")
        explain_text.check_text(text)
        version = await find_version(self.registry, (ref.model_name, ref.selector() or "production"))
        checkpoint = await self._checkpoint_of(version, HF)
        if checkpoint is None:
            raise FailedPrecondition(
                f"{version.model_name}:{version.version} has no Hugging Face checkpoint behind it; text is explained "
                "for text classifiers imported from a folder or fine-tuned here (send inputs for other models)"
            )
        if checkpoint.task != "sequence-classification":
            raise FailedPrecondition(
                f"{checkpoint.model_name}:{checkpoint.version} is a {checkpoint.task or 'text'} model; per-token "
                "explanations need a sequence-classification model (a class to explain)"
            )
        model, tokenizer, max_length = await self._load(checkpoint, "hf")
        done = await asyncio.to_thread(
            explain_text.token_integrated_gradients,
            model,
            tokenizer,
            text,
            target,
            max_length,
            steps or explain.IG_STEPS,
        )
        return Explained(
            version.model_name, version.version, checkpoint.model_name, checkpoint.version, done.result, done.tokens
        )

    async def explain(
        self,
        ref: Ref,
        inputs: list[float],
        baseline: list[float],
        target: int | None,
        method: str,
        steps: int,
        text: str = "",
    ) -> Explained:
        """Attributions of one row's prediction (or of a sentence's, with ``text``) by the version ``ref`` names."""
        if method not in METHODS:
            raise InvalidArgument(f"method must be integrated_gradients or kernel_shap (or empty), got {method!r}")
        if not ref.model_name:
            raise InvalidArgument("ref.model_name is required")
        if text:
            if inputs or baseline:
                raise InvalidArgument("send inputs (a row of features) or text (a sentence), not both")
            if steps < 0:
                raise InvalidArgument("steps must be >= 0 (0 = the method's default)")
            return await self.explain_text(ref, text, target, method, steps)
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
