"""A text job's checks on submit, and its source folder on dispatch (server side: no torch here).

On submit the named base or teacher is looked up (NOT_FOUND when the registry has no such version,
FAILED_PRECONDITION when it is not a READY Hugging Face checkpoint fit for the job), its alias is pinned
to a version number, and the labelled table is fetched and parsed (INVALID_ARGUMENT naming the bad row).
So a request that cannot train is refused before a job exists, and nothing is registered for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.training.paths import DATASET_FILE, SOURCE_DIR
from aiaas_services.training.publishing import Publisher, PublishError
from aiaas_services.training.spec import DISTILL, JobSpec, ModelRef
from aiaas_services.training.text.data import MAX_TABLE_BYTES, TableError, check_split, parse_table


async def check_text_job(spec: JobSpec, publisher: Publisher, job_dir: Path) -> JobSpec:
    """The spec with its source pinned; the table is parsed and written to ``job_dir``. Raises the
    runtime's status errors with the reason."""
    text = spec.text
    assert text is not None and spec.dataset is not None
    if text.source is not None:
        try:
            source = await publisher.describe(text.source)
        except PublishError as exc:
            if exc.not_found:
                raise NotFound(f"spec.text.{text.role} {text.source}: no such model version in the registry") from None
            raise FailedPrecondition(f"spec.text.{text.role}: the registry could not be read ({exc})") from None
        where = f"spec.text.{text.role} {source.model_name}:{source.version}"
        if source.format != "hf":
            raise FailedPrecondition(
                f"{where} is format {source.format}, not a Hugging Face checkpoint (hf); import the folder with "
                "`aiaas import FOLDER` and name that version"
            )
        if not source.ready:
            raise FailedPrecondition(f"{where} is not READY")
        if text.mode == DISTILL and source.task != "sequence-classification":
            raise FailedPrecondition(
                f"{where} has task {source.task or 'unset'}; a teacher must be a sequence-classification model "
                "(fine-tune one first)"
            )
        pinned = ModelRef(source.model_name, source.version)
        spec = dataclasses.replace(spec, text=dataclasses.replace(text, source=pinned))
    dataset = spec.dataset
    assert dataset is not None
    try:
        payload = await publisher.fetch_dataset(dataset)
    except PublishError as exc:
        if exc.not_found:
            raise NotFound(f"spec.data.registry: {exc}") from None
        raise FailedPrecondition(f"spec.data.registry could not be read: {exc}") from None
    if len(payload) > MAX_TABLE_BYTES:
        raise InvalidArgument(f"{dataset.artifact_name} is {len(payload)} bytes; a text table may be {MAX_TABLE_BYTES}")
    try:
        table = await asyncio.to_thread(parse_table, payload, dataset.artifact_name)
        check_split(len(table.texts), len(table.label_names), float(spec.data.get("test_fraction") or 0.2))
    except TableError as exc:
        raise InvalidArgument(f"spec.data.registry: {exc}") from None
    await asyncio.to_thread(_write, job_dir / DATASET_FILE, payload)
    return spec


async def fetch_source(ref: ModelRef, publisher: Publisher, job_dir: Path) -> None:
    """The base or teacher folder into ``<job dir>/source`` (once: a resumed job finds it there)."""
    folder = job_dir / SOURCE_DIR
    if folder.is_dir():
        return
    partial = job_dir / (SOURCE_DIR + ".part")
    await publisher.fetch_folder(ref, partial)
    await asyncio.to_thread(os.replace, partial, folder)


def _write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
