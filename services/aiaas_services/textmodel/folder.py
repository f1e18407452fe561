"""Vet an uploaded Hugging Face folder (a flat tar) before anything is registered.

Only plain top-level files with safe names are unpacked; pickled weights (``pytorch_model.bin`` and the
like) are refused because loading them runs code. ``config.json`` must name a supported architecture,
the weights must be safetensors, and the WordPiece vocabulary must be there: that is what the exported
graph's tokenizer needs. Everything is checked before the registry sees a thing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from safetensors import safe_open

# Suffixes of formats that unpickle (or may) on load: refused outright.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".h5", ".msgpack")
# Files the import keeps; anything else (README.md, .gitattributes ...) is skipped and reported.
KEPT = re.compile(
    r"^(config\.json|vocab\.txt|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|[A-Za-z0-9_\-.]+\.safetensors"
    r"|model\.safetensors\.index\.json)$"
)
NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$")
SUPPORTED_MODEL_TYPES = ("bert",)  # WordPiece BERT encoders (BERT, MiniLM, ...): the in-graph tokenizer is BERT's
TASKS = ("embedding", "sequence-classification")
MAX_FILES = 64
MAX_CONFIG_BYTES = 1 << 20


class FolderRefused(ValueError):
    """Why the folder cannot be imported (fit to show the user)."""


@dataclasses.dataclass(frozen=True)
class HfFolder:
    """What a vetted folder holds."""

    path: Path
    files: tuple[str, ...]
    skipped: tuple[str, ...]
    model_type: str
    architecture: str
    hidden_size: int
    max_positions: int
    labels: tuple[str, ...]  # id2label in id order (empty for an embedding model)


def unpack(archive: Path, dest: Path, max_file_bytes: int, max_total_bytes: int) -> tuple[list[str], list[str]]:
    """Extract the tar's kept members into ``dest``; returns (kept, skipped) names.

    Refuses links, devices, sub-folders, unsafe names, pickles and sizes over the limits.
    """
    kept: list[str] = []
    skipped: list[str] = []
    total = 0
    try:
        tar = tarfile.open(archive, "r:")  # noqa: SIM115 - closed by the with below; uncompressed: no bombs
    except tarfile.TarError as exc:
        raise FolderRefused(f"the upload is not an uncompressed tar of the folder's files ({exc})") from exc
    with tar:
        members = tar.getmembers()
        if len(members) > MAX_FILES:
            raise FolderRefused(f"the folder has {len(members)} entries; at most {MAX_FILES} are taken")
        for member in members:
            name = member.name
            if "/" in name or "\\" in name or not NAME.match(name) or name in (".", ".."):
                raise FolderRefused(f"entry {name!r} is not a plain top-level file name (no paths, links or '..')")
            if not member.isfile():
                raise FolderRefused(f"entry {name!r} is not a regular file (links and devices are refused)")
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise FolderRefused(
                    f"{name} is a pickled checkpoint (loading it runs code); only *.safetensors weights are "
                    "accepted: convert it (save_pretrained(..., safe_serialization=True)) and remove it"
                )
            if not KEPT.match(name):
                skipped.append(name)
                continue
            if member.size > max_file_bytes:
                raise FolderRefused(f"{name} is {member.size} bytes, over the {max_file_bytes} byte per-file limit")
            total += member.size
            if total > max_total_bytes:
                raise FolderRefused(f"the folder is over the {max_total_bytes} byte import limit")
            source = tar.extractfile(member)
            if source is None:
                raise FolderRefused(f"entry {name!r} cannot be read")
            with source, (dest / name).open("wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
            kept.append(name)
    return kept, skipped


def vet(folder: Path, files: list[str], skipped: list[str], task: str) -> HfFolder:
    """Check config, weights and vocabulary; the folder must be loadable for ``task``."""
    if task not in TASKS:
        raise FolderRefused(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if "config.json" not in files:
        raise FolderRefused("config.json is missing (a Hugging Face folder has config.json, *.safetensors, vocab.txt)")
    config_path = folder / "config.json"
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise FolderRefused("config.json is over 1 MiB")
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FolderRefused(f"config.json is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise FolderRefused("config.json must be a JSON object")
    model_type = str(config.get("model_type", ""))
    architectures = config.get("architectures") or []
    architecture = str(architectures[0]) if isinstance(architectures, list) and architectures else ""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise FolderRefused(
            f"unsupported architecture {architecture or '?'} (model_type {model_type or 'missing'}): supported are "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (WordPiece encoders such as BERT and MiniLM)"
        )
    weights = [f for f in files if f.endswith(".safetensors")]
    if not weights:
        raise FolderRefused("no *.safetensors weights in the folder")
    for name in weights:
        try:
            with safe_open(str(folder / name), framework="numpy") as handle:
                if not list(handle.keys()):
                    raise FolderRefused(f"{name} holds no tensors")
        except FolderRefused:
            raise
        except Exception as exc:
            raise FolderRefused(f"{name} is not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    if "vocab.txt" not in files:
        raise FolderRefused("vocab.txt (the WordPiece vocabulary the in-graph tokenizer needs) is missing")
    labels = _labels(config)
    if task == "sequence-classification" and (not architecture.endswith("ForSequenceClassification") or not labels):
        raise FolderRefused(
            "task sequence-classification needs a *ForSequenceClassification config with id2label; "
            "import the base model as task embedding and fine-tune it instead"
        )
    return HfFolder(
        path=folder,
        files=tuple(sorted(files)),
        skipped=tuple(sorted(skipped)),
        model_type=model_type,
        architecture=architecture,
        hidden_size=int(config.get("hidden_size") or 0),
        max_positions=int(config.get("max_position_embeddings") or 512),
        labels=labels if task == "sequence-classification" else (),
    )


def _labels(config: dict[str, Any]) -> tuple[str, ...]:
    raw = config.get("id2label") or {}
    if not isinstance(raw, dict) or not raw:
        return ()
    try:
        pairs = sorted((int(k), str(v)) for k, v in raw.items())
    except (TypeError, ValueError) as exc:
        raise FolderRefused("config.json id2label must map integer ids to names") from exc
    if [k for k, _ in pairs] != list(range(len(pairs))):
        raise FolderRefused("config.json id2label ids must be 0..n-1")
    return tuple(v for _, v in pairs)
