"""ImportModel: receive an uploaded ONNX file (or a Hugging Face folder as a tar), vet it, register it
(with reference statistics for drift monitoring when the header carries calibration data: an ``.npz`` for
a file, sentences for a folder).

The stream is written to a private temp folder and hashed as it arrives; nothing is parsed until the
whole file is there and its sha256 matches. Validation (pipeline/validate.py) runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from aiaas.client.registry import RegistryClient
from aiaas.wire import ONNX
from aiaas_services.runtime.errors import DigestMismatch, InvalidArgument
from aiaas_services.serialization import reference
from aiaas_services.serialization.pipeline import validate
from aiaas_services.serialization.pipeline.inputs import DataMismatch
from aiaas_services.serialization.pipeline.variants import PREFERRED_PROVIDER
from aiaas_services.serialization.records import Imported, ImportHeader, ImportPart, Ref
from aiaas_services.serialization.registration import MODEL_ARTIFACT, ONNX_MEDIA_TYPE, register_upload
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.text import hf_import
from aiaas_services.serialization.text.calibration import SentencesRefused

TASKS = ("", "classification", "regression", "vae")
FORMATS = ("", "onnx", "hf")
REFERENCE_ARTIFACT = "reference.json"


class Importer:
    """Validates and registers uploaded ONNX models and Hugging Face folders."""

    def __init__(self, settings: SerializationSettings, registry: RegistryClient) -> None:
        self.settings = settings
        self.registry = registry
        self.limits = validate.Limits(settings.import_min_opset, settings.import_max_opset, settings.max_tensor_bytes)

    async def receive(self, parts: AsyncIterator[ImportPart], folder: Path) -> tuple[ImportHeader, Path]:
        """Write the stream to ``folder/upload`` (an ONNX file or an HF folder's tar); checks order, size
        limit and digest."""
        header: ImportHeader | None = None
        path = folder / "upload"
        digest = hashlib.sha256()
        received = 0
        sent_digest = ""
        with path.open("wb") as handle:
            async for message in parts:
                part = message.kind
                if header is None:
                    if part != "header" or message.header is None:
                        raise InvalidArgument("the first ImportModel message must be the header")
                    header = message.header
                    self._check_header(header)
                elif part == "chunk":
                    if sent_digest:
                        raise InvalidArgument("chunks after the sha256 message")
                    received += len(message.chunk)
                    if received > self.settings.max_import_bytes:
                        raise InvalidArgument(
                            f"the model is larger than the {self.settings.max_import_bytes} byte import limit"
                        )
                    digest.update(message.chunk)
                    handle.write(message.chunk)
                elif part == "sha256":
                    sent_digest = message.sha256.strip().lower()
                else:
                    raise InvalidArgument("only one header per import")
        if header is None:
            raise InvalidArgument("empty import stream: send a header, the chunks, then the sha256")
        if not sent_digest:
            raise InvalidArgument("the import ended without its sha256 message (incomplete upload)")
        if header.size_bytes and header.size_bytes != received:
            raise InvalidArgument(
                f"the header declared {header.size_bytes} bytes but {received} arrived (truncated upload)"
            )
        if sent_digest != digest.hexdigest():
            raise DigestMismatch(f"sha256 mismatch: sent {sent_digest}, content hashes to {digest.hexdigest()}")
        if received == 0:
            raise InvalidArgument("the uploaded model is empty")
        return header, path

    def _check_header(self, header: ImportHeader) -> None:
        if not header.model_name:
            raise InvalidArgument("header.model_name is required")
        if header.size_bytes < 0 or header.size_bytes > self.settings.max_import_bytes:
            raise InvalidArgument(
                f"header.size_bytes {header.size_bytes} is over the {self.settings.max_import_bytes} byte import limit"
            )
        if header.format not in FORMATS:
            raise InvalidArgument(f"header.format must be onnx (or empty) or hf, got {header.format!r}")
        if header.calibration_npz and header.format == "hf":
            raise InvalidArgument(
                "header.calibration_npz is taken for ONNX imports only; a Hugging Face folder (format hf) takes "
                "calibration sentences in header.calibration_text"
            )
        if header.calibration_text:
            if header.format != "hf":
                raise InvalidArgument(
                    "header.calibration_text (calibration sentences) is for Hugging Face folder imports only "
                    "(format hf); an ONNX import takes an .npz in header.calibration_npz"
                )
            try:
                hf_import.calibration_sentences(header.calibration_text)
            except SentencesRefused as exc:
                raise InvalidArgument(f"calibration sentences refused: {exc}") from exc
        if header.format == "hf":
            if header.task not in hf_import.TASKS:
                raise InvalidArgument(
                    f"header.task of an hf import must be {' or '.join(hf_import.TASKS)}, got {header.task!r}"
                )
        elif header.task not in TASKS:
            raise InvalidArgument(f"header.task must be one of classification, regression, vae, got {header.task!r}")

    async def import_model(self, parts: AsyncIterator[ImportPart]) -> Imported:
        folder = self.settings.data_dir / "imports" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            header, path = await self.receive(parts, folder)
            if header.format == "hf":
                return await hf_import.import_folder(self.registry, self.settings, header, path, folder / "hf")
            try:
                info = await asyncio.to_thread(validate.validate_file, path, self.limits)
            except validate.InvalidModel as exc:
                raise InvalidArgument(f"model refused: {exc}") from exc
            rows = 0
            if header.calibration_npz:
                rows = await self._reference(header, path, folder / REFERENCE_ARTIFACT)
            ref = await self._register(header, path, info, folder / REFERENCE_ARTIFACT if rows else None)
            return Imported(ref, info.opset, info.inputs, info.outputs, rows)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _reference(self, header: ImportHeader, model: Path, target: Path) -> int:
        """Write the reference statistics of the calibration data to ``target``; the rows used."""
        try:
            stats, rows = await asyncio.to_thread(
                reference.import_reference, model, header.calibration_npz, header.task
            )
        except DataMismatch as exc:
            raise InvalidArgument(f"calibration data refused: {exc}") from exc
        await asyncio.to_thread(target.write_text, json.dumps(stats))
        return rows

    async def _register(
        self, header: ImportHeader, path: Path, info: validate.ModelInfo, reference_file: Path | None
    ) -> Ref:
        tags = dict(header.tags) | {"preferred_provider": PREFERRED_PROVIDER["fp32"], "imported": "true"}
        if header.task:
            tags["task"] = header.task
        files = [(MODEL_ARTIFACT, path, ONNX_MEDIA_TYPE)]
        if reference_file is not None:  # drift monitoring finds it beside the model
            files.append((REFERENCE_ARTIFACT, reference_file, "application/json"))
        return await register_upload(
            self.registry,
            header.model_name,
            files,
            format=ONNX,
            variant="fp32",
            info=info,
            tags=tags,
            description=header.description or f"imported ONNX model (opset {info.opset})",
            step="registering the imported model",
        )
