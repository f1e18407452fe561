"""What the model manager serves and where it finds it: the immutable ``ServedModel`` snapshot, the
``models`` setting's entries, session options, and the local model repository's layout
(``<repo>/<name>/<version>/model.onnx``, with an optional ``variant.txt`` beside it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiaas_services.inference.batching import BatchPolicy
from aiaas_services.inference.model import LoadedModel
from aiaas_services.inference.providers import ProviderConfig

MODEL_FILE = "model.onnx"
LOADING_LOCAL = "loading from the model repository"


@dataclass(frozen=True)
class ServedModel:
    """A model's loaded versions; replaced whole, never mutated."""

    name: str
    versions: dict[str, LoadedModel]
    default: str
    alias: str = ""

    def by_variant(self, variant: str) -> LoadedModel | None:
        """The loaded version whose variant is ``variant``."""
        for model in self.versions.values():
            if model.source.variant == variant:
                return model
        return None


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the ``models`` setting: ``name``, ``name@alias`` or ``name@<version number>``."""

    name: str
    alias: str = ""
    version: int = 0

    @classmethod
    def parse(cls, text: str, default_alias: str) -> ModelSpec:
        """Read ``name[@alias|@number]``."""
        name, _, selector = text.strip().partition("@")
        if not name:
            raise ValueError(f"models: empty model name in {text!r}")
        if selector.isdigit():
            return cls(name, version=int(selector))
        return cls(name, alias=selector or default_alias)

    @property
    def selector(self) -> str | int:
        """What to resolve in the registry."""
        return self.version or self.alias


def scan_repository(root: Path) -> dict[str, dict[str, Path]]:
    """``<root>/<name>/<version>/model.onnx`` -> {name: {version: path}} (numeric version folders only)."""
    found: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = {
            v.name: v / MODEL_FILE for v in model_dir.iterdir() if v.name.isdigit() and (v / MODEL_FILE).is_file()
        }
        if versions:
            found[model_dir.name] = versions
    return found


def newest(versions: Iterable[str]) -> str:
    """The highest numeric version label."""
    return max(versions, key=int)


@dataclass
class LoadOptions:
    """How sessions are built (from the settings)."""

    config: ProviderConfig
    instances: int
    policy: BatchPolicy
    max_elements: int
    warmup_runs: int
    io_binding: bool = True
    observe_factory: Callable[[str, str], Any] | None = None


@dataclass
class Pending:
    """A configured model that is not (yet) loaded, and why."""

    reason: str
    spec: ModelSpec | None = None


def read_variant(path: Path) -> str:
    """A local version may name its variant in ``variant.txt`` beside model.onnx."""
    marker = path.parent / "variant.txt"
    return marker.read_text().strip() if marker.is_file() else ""
