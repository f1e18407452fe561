"""ONNX Runtime custom ops: onnxruntime-extensions' library (the tokenizers text models carry in their graph).

Registered in every session we open, so a graph with ``ai.onnx.contrib`` ops loads like any other; a
graph without them is unaffected.
"""

from __future__ import annotations

import functools

import onnxruntime as ort


@functools.cache
def library_path() -> str | None:
    """Path of the extensions' shared library, or None when the package is not installed."""
    try:
        # optional package: the service runs without it (no tokenizer-in-graph models then)
        import onnxruntime_extensions
    except ImportError:
        return None
    return str(onnxruntime_extensions.get_library_path())


def register(options: ort.SessionOptions) -> ort.SessionOptions:
    """Register the extensions' ops in ``options`` (no-op without the package); returns ``options``."""
    path = library_path()
    if path:
        options.register_custom_ops_library(path)
    return options
