"""`aiaas infer MODEL --input x.npy|x.json [--top-k K] [--version N]`: one inference from the shell.

A text model (one BYTES input) takes ``--text "Hello, world!"`` (repeatable) or ``--text-file FILE`` (one
UTF-8 string per line) instead; it prints each string's label or embedding.

The input file is a ``.npy`` array or a JSON list of rows (or ``{"input_name": rows, ...}`` for models
with several inputs); a 1-D input is sent as one row. Output: per row the top-k classes (with --top-k)
or the raw output values; ``--json`` prints everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from aiaas.cli._common import EXIT_OK, add_connection_flags, open_channel, print_json, run_command
from aiaas.client.inference import SyncInferenceClient, top_k


def read_inputs(path: Path, input_names: list[str], datatypes: dict[str, str]) -> dict[str, np.ndarray]:
    """The request's input arrays from a .npy or .json file, shaped [batch, ...] in the model's dtypes."""
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.suffix == ".npy":
        raw: Any = {input_names[0]: np.load(path, allow_pickle=False)}
    elif path.suffix == ".json":
        loaded = json.loads(path.read_text())
        raw = loaded if isinstance(loaded, dict) else {input_names[0]: loaded}
    else:
        raise ValueError(f"input file {path}: use .npy or .json")
    unknown = set(raw) - set(input_names)
    if unknown:
        raise ValueError(f"unknown input(s) {sorted(unknown)}; the model takes {input_names}")
    arrays = {}
    numpy_types = {
        "FP32": np.float32,
        "FP64": np.float64,
        "FP16": np.float16,
        "BF16": ml_dtypes.bfloat16,
        "INT64": np.int64,
        "INT32": np.int32,
    }
    for name, value in raw.items():
        datatype = datatypes.get(name, "FP32")
        array = np.asarray(value, dtype=object if datatype == "BYTES" else numpy_types.get(datatype))
        arrays[name] = array[None, :] if array.ndim == 1 else array
    return arrays


def text_array(texts: list[str], path: str = "") -> np.ndarray:
    """The strings of --text and the lines of --text-file as one 1-D BYTES batch."""
    items = list(texts)
    if path:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"text file {source} does not exist")
        items += source.read_text("utf-8").splitlines()
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _text_input(names: list[str], datatypes: dict[str, str]) -> str:
    texts = [name for name in names if datatypes.get(name) == "BYTES"]
    if len(names) != 1 or not texts:
        raise ValueError(f"--text needs a model with one BYTES input; this one takes {names}")
    return texts[0]


@run_command
def infer(args: argparse.Namespace) -> int:
    """Run one ModelInfer and print the outputs."""
    client = SyncInferenceClient(open_channel(args), timeout=args.timeout, on_wait=_waiting(args.target))
    metadata = client.metadata(args.model, args.version or "")
    names = [tensor.name for tensor in metadata.inputs]
    datatypes = {tensor.name: tensor.datatype for tensor in metadata.inputs}
    if args.text or args.text_file:
        inputs = {_text_input(names, datatypes): text_array(args.text, args.text_file)}
    elif args.input:
        inputs = read_inputs(Path(args.input), names, datatypes)
    else:
        raise ValueError("give --input FILE, or --text/--text-file for a text model")
    result = client.infer(args.model, inputs, version=args.version or "", variant=args.variant)
    for name, array in result.outputs.items():  # BF16 prints as the float32 numbers it holds exactly
        if array.dtype == ml_dtypes.bfloat16:
            result.outputs[name] = array.astype(np.float32)
    if args.json:
        payload: dict[str, Any] = {"model": result.model, "version": result.version, "outputs": {}}
        for name, array in result.outputs.items():
            payload["outputs"][name] = array.tolist() if array.dtype != object else [_str(v) for v in array.ravel()]
            if args.top_k and array.ndim == 2 and array.dtype.kind == "f":
                payload.setdefault("top_k", {})[name] = top_k(array, args.top_k)
        print_json(payload)
        return EXIT_OK
    print(f"model {result.model} version {result.version}")
    for name, array in result.outputs.items():
        if args.top_k and array.ndim == 2 and array.dtype.kind == "f":
            for row, best in enumerate(top_k(array, args.top_k)):
                print(f"{name}[{row}]: " + ", ".join(f"{index}={score:.4g}" for index, score in best))
        elif array.dtype == object:
            print(f"{name} {list(array.shape)}: {[_str(v) for v in array.ravel()]}")
        else:
            print(f"{name} {list(array.shape)}: {array.tolist()}")
    return EXIT_OK


def _waiting(target: str) -> Any:
    """Says on stderr that the call waits for the service (a restart, or a server not up yet)."""

    def say(error: Any, seconds: float) -> None:
        print(
            f"inference at {target} is unavailable ({error.details()}); waiting up to {seconds:.0f}s for it",
            file=sys.stderr,
            flush=True,
        )

    return say


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `aiaas infer`."""
    parser = subparsers.add_parser("infer", help="run one inference on the inference service")
    parser.add_argument("model", help="model name")
    parser.add_argument("--input", default="", help="input file: .npy array or .json rows")
    parser.add_argument("--text", action="append", default=[], help="a string for a text model (repeatable)")
    parser.add_argument("--text-file", default="", help="a file of strings for a text model, one per line")
    parser.add_argument("--top-k", type=int, default=0, help="print the K best classes per row")
    parser.add_argument("--version", default="", help="version number (default: the served one)")
    parser.add_argument("--variant", default="", help="variant such as fp32 or int8-dynamic (when loaded)")
    add_connection_flags(parser, "inference")
    parser.set_defaults(func=infer)
