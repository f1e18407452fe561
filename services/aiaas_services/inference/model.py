"""A loaded model version: its ONNX Runtime sessions, its signature, request validation and its batcher.

Everything a request needs is checked here, before anything is queued: input names, datatypes, ranks,
fixed dimensions, byte lengths (in the codec), one batch size across inputs, and an element limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from aiaas_services.inference.batcher import Batcher
from aiaas_services.inference.batching import BatchPolicy, StoppableRunFn
from aiaas_services.inference.loading import check_external_data
from aiaas_services.inference.ortvalues import needs_ortvalues, ortvalue_runner
from aiaas_services.inference.providers import (
    CUDA,
    ProviderConfig,
    fallback_note,
    plan_providers,
    session_option_values,
)
from aiaas_services.inference.tensors import ORT_TO_V2, V2_TO_NUMPY, element_count
from aiaas_services.runtime import custom_ops
from aiaas_services.runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

_GRAPH_LEVEL = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, V2 datatype, shape with -1 for dynamic dimensions."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass
class ModelSource:
    """Where a version came from and what the registry says about it."""

    name: str
    version: str
    path: Path
    variant: str = ""
    origin: str = "repository"  # "repository" (local folder) or "registry"
    alias: str = ""
    sha256: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def _tensor_info(arg: Any) -> TensorInfo:
    datatype = ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise InvalidArgument(f"tensor '{arg.name}' has type {arg.type}, which this server cannot carry")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in (arg.shape or []))
    return TensorInfo(arg.name, datatype, shape)


def session_options(config: ProviderConfig) -> ort.SessionOptions:
    """``SessionOptions`` from the configuration (threads, graph optimization)."""
    values = session_option_values(config)
    options = custom_ops.register(ort.SessionOptions())
    options.intra_op_num_threads = values["intra_op_num_threads"]
    options.inter_op_num_threads = values["inter_op_num_threads"]
    options.graph_optimization_level = _GRAPH_LEVEL[values["graph_optimization_level"]]
    return options


def open_sessions(path: Path, config: ProviderConfig, count: int) -> tuple[list[ort.InferenceSession], list[str]]:
    """``count`` sessions of one model file; returns them and the providers they really got."""
    check_external_data(path)  # ours, before ONNX Runtime reads anything the file points to
    ort.set_default_logger_severity(4)  # ORT's CUDA-missing noise; our fallback line below says it
    probe = ort.InferenceSession(
        str(path), sess_options=custom_ops.register(ort.SessionOptions()), providers=["CPUExecutionProvider"]
    )
    static = all(dim >= 0 for arg in probe.get_inputs() for dim in _tensor_info(arg).shape)
    plan = plan_providers(config, ort.get_available_providers(), static_shapes=static)
    for note in plan.notes:
        logger.info("%s: %s", path, note)
    sessions = [
        ort.InferenceSession(str(path), sess_options=session_options(config), providers=plan.providers)
        for _ in range(max(1, count))
    ]
    granted = sessions[0].get_providers()
    fallback = fallback_note([name for name in config.preferred if name in plan.names] or plan.names, granted)
    if fallback:
        logger.warning("%s: %s", path, fallback)
    return sessions, granted


def plain_runner(session: ort.InferenceSession) -> StoppableRunFn:
    """A run function for the CPU: ``session.run`` with all outputs (``control``: RunOptions that may stop it)."""
    run = session.run

    def runner(feeds: dict[str, np.ndarray], control: Any = None) -> list[np.ndarray]:
        return run(None, feeds, control)  # type: ignore[no-any-return]

    return runner


def bound_runner(session: ort.InferenceSession, device: str = "cuda", device_id: int = 0) -> StoppableRunFn:
    """A run function with IO binding: inputs copied once to ``device``, outputs bound there and fetched.

    On CUDA this avoids ONNX Runtime's per-run host<->device staging of every tensor. With
    ``device="cpu"`` it is the CPU-testable twin of the same code path.
    """
    output_names = [arg.name for arg in session.get_outputs()]

    def runner(feeds: dict[str, np.ndarray], control: Any = None) -> list[np.ndarray]:
        binding = session.io_binding()
        for name, array in feeds.items():
            if device == "cpu" or array.dtype == object:
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
            else:
                value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, device_id)
                binding.bind_ortvalue_input(name, value)
        for name in output_names:
            binding.bind_output(name, device, device_id)
        session.run_with_iobinding(binding, control)
        return list(binding.copy_outputs_to_cpu())

    return runner


@dataclass
class PreparedRequest:
    """A validated request: inputs as arrays (in the model's input order), its batch rows and batch key."""

    inputs: dict[str, np.ndarray]
    rows: int
    key: Hashable


class LoadedModel:
    """One served model version: sessions, batcher, signature, and where it came from."""

    # Most BYTES elements (strings) one request may carry: each may cost a tokenizer run and a row of a
    # text model's work, so 100k strings in one request are refused rather than queued as one huge run.
    max_strings = 4096

    def __init__(
        self,
        source: ModelSource,
        sessions: Sequence[ort.InferenceSession],
        providers: list[str],
        policy: BatchPolicy,
        loop: asyncio.AbstractEventLoop,
        max_elements: int,
        io_binding: bool = True,
        cuda_device_id: int = 0,
        observe: Any = None,
    ) -> None:
        self.source = source
        self.providers = providers
        self.max_elements = max_elements
        first = sessions[0]
        self.inputs = [_tensor_info(arg) for arg in first.get_inputs()]
        self.outputs = [_tensor_info(arg) for arg in first.get_outputs()]
        self.inputs_by_name = {info.name: info for info in self.inputs}
        self._checks = [
            (info, tuple((axis, want) for axis, want in enumerate(info.shape) if want >= 0)) for info in self.inputs
        ]
        self.output_index = {info.name: i for i, info in enumerate(self.outputs)}
        self._strings = [info.name for info in self.inputs if info.datatype == "BYTES"]
        self.batchable = policy.enabled and all(
            info.shape and info.shape[0] == -1 for info in (*self.inputs, *self.outputs)
        )
        effective = (
            policy
            if self.batchable
            else BatchPolicy(
                enabled=False,
                queue_limit=policy.queue_limit,
                inline_below_s=policy.inline_below_s,
                trace_spans=policy.trace_spans,
                cancel_checks=policy.cancel_checks,
            )
        )
        if needs_ortvalues(first):  # BF16 tensors: session.run refuses them (inference/ortvalues.py)
            runners = [ortvalue_runner(session) for session in sessions]
        elif providers and providers[0] == CUDA and io_binding:
            runners = [bound_runner(session, "cuda", cuda_device_id) for session in sessions]
        else:
            runners = [plain_runner(session) for session in sessions]
        self._runners = runners
        self.instance_count = len(sessions)
        self.policy = effective
        # On the CPU a run computes on the calling thread: its thread CPU time is its cost (wall time would
        # count GIL waits and a busy machine); other providers wait on a device, so wall time it is.
        on_cpu = not providers or providers[0] == "CPUExecutionProvider"
        self.batcher = Batcher(
            f"{source.name}:{source.version}",
            runners,
            effective,
            loop,
            observe,
            make_control=ort.RunOptions,
            run_clock=time.thread_time if on_cpu else time.monotonic,
        )
        self.loaded_at = time.time()

    @property
    def name(self) -> str:
        """Model name."""
        return self.source.name

    @property
    def version(self) -> str:
        """Version label (a number as text)."""
        return self.source.version

    @property
    def provider(self) -> str:
        """The execution provider that runs this model."""
        return self.providers[0] if self.providers else "CPUExecutionProvider"

    def warm_up(self, runs: int, control: Any = None) -> None:
        """Run every instance on zeros of batch size 1 (blocking; call in a thread).

        ``control`` (RunOptions) lets a shutdown stop a warm-up run instead of waiting for it.
        """
        feeds = {info.name: _zeros(info) for info in self.inputs}
        for runner in self._runners:
            for _ in range(max(0, runs)):
                runner(feeds, control)

    def prepare(self, arrays: Mapping[str, np.ndarray]) -> PreparedRequest:
        """Validate decoded inputs against the signature; the result can be queued.

        The common case is a handful of comparisons; the detailed messages are built only on failure.
        """
        if len(arrays) != len(self.inputs) or any(info.name not in arrays for info in self.inputs):
            missing = [info.name for info in self.inputs if info.name not in arrays]
            raise InvalidArgument(
                f"model {self.name}: missing input(s) {', '.join(repr(m) for m in missing)}; "
                f"the model takes {', '.join(repr(i.name) for i in self.inputs)}"
            )
        rows = -1
        total = 0
        keys = []
        for info, fixed in self._checks:
            shape = arrays[info.name].shape
            if len(shape) != len(info.shape) or any(shape[axis] != want for axis, want in fixed):
                self._shape_error(info, shape)
            total += math.prod(shape)
            if shape:
                if rows < 0:
                    rows = shape[0]
                elif shape[0] != rows and self.batchable:
                    raise InvalidArgument(
                        f"model {self.name}: inputs disagree on the batch size ({rows} vs {shape[0]} for '{info.name}')"
                    )
            keys.append(shape[1:])
        if total > self.max_elements:
            raise InvalidArgument(
                f"model {self.name}: the request carries {total} elements, more than the limit of {self.max_elements}"
            )
        if self._strings and (count := sum(arrays[name].size for name in self._strings)) > self.max_strings:
            raise InvalidArgument(
                f"model {self.name}: the request carries {count} strings, more than the limit of {self.max_strings} "
                "per request; split it into several requests"
            )
        if not self.batchable:
            return PreparedRequest(dict(arrays), max(rows, 1), None)
        if rows == 0:
            raise InvalidArgument(f"model {self.name}: batch size 0; send at least one row")
        return PreparedRequest(dict(arrays), rows, keys[0] if len(keys) == 1 else tuple(keys))

    def _shape_error(self, info: TensorInfo, shape: tuple[int, ...]) -> None:
        if len(shape) != len(info.shape):
            raise InvalidArgument(
                f"model {self.name}: input '{info.name}' has shape {list(shape)} but the model expects "
                f"rank {len(info.shape)} {list(info.shape)} (-1 = any size)"
            )
        for axis, (got, want) in enumerate(zip(shape, info.shape, strict=True)):
            if want >= 0 and got != want:
                raise InvalidArgument(
                    f"model {self.name}: input '{info.name}' dimension {axis} is {got}, the model expects "
                    f"{want} (shape {list(info.shape)})"
                )

    def input_info(self, name: str) -> TensorInfo | None:
        """The signature entry of an input name, or None."""
        return self.inputs_by_name.get(name)

    def close(self, timeout: float) -> bool:
        """Drain and stop the instance threads (blocking)."""
        return self.batcher.close(timeout)


def _zeros(info: TensorInfo) -> np.ndarray:
    shape = [dim if dim >= 0 else 1 for dim in info.shape]
    if info.datatype == "BYTES":
        array = np.empty(element_count(shape), dtype=object)
        array[:] = [""] * array.size
        return array.reshape(shape)
    return np.zeros(shape, dtype=V2_TO_NUMPY[info.datatype])


def build_loaded_model(
    source: ModelSource,
    config: ProviderConfig,
    instances: int,
    policy: BatchPolicy,
    loop: asyncio.AbstractEventLoop,
    max_elements: int,
    warmup_runs: int,
    io_binding: bool = True,
    observe: Any = None,
    warmup_control: Any = None,
) -> LoadedModel:
    """Open sessions, wrap them and warm them up (blocking: call it in a thread, never on the loop)."""
    sessions, granted = open_sessions(source.path, config, instances)
    model = LoadedModel(
        source, sessions, granted, policy, loop, max_elements, io_binding, config.cuda_device_id, observe
    )
    try:
        model.warm_up(warmup_runs, warmup_control)
    except Exception:
        model.close(1.0)
        raise
    logger.info(
        "loaded %s version %s (%s) on %s, %d instance(s), batching %s",
        source.name,
        source.version,
        source.variant or "no variant",
        ",".join(granted),
        len(sessions),
        "on" if model.batchable else "off",
    )
    return model
