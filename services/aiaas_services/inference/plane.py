"""The inference data plane both transports share: resolve, validate, queue on the batcher, count.

The gRPC servicer and the REST app each decode their own wire format into arrays (their codecs) and
hand this module a ``decode`` callback; everything after that (which version answers, the advertised
batch limit, a deadline already spent, the batcher, the success/failure counts) happens here once, so
the two protocols cannot drift apart. No gRPC or HTTP here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aiaas_services.inference.manager import ModelManager
from aiaas_services.inference.metrics import REQUEST_COUNTS
from aiaas_services.inference.model import LoadedModel
from aiaas_services.runtime.errors import DeadlineExceeded, InvalidArgument, Unavailable

# Requests of this process between resolve and answer, over both transports (all on the event loop).
_in_flight = 0

# decode(model) -> (input arrays by name, indices of the requested outputs or None for all)
Decoder = Callable[[LoadedModel], tuple[dict[str, np.ndarray], Sequence[int] | None]]


@dataclass(frozen=True)
class InferResult:
    """What a transport encodes: the model that answered, its outputs and the selection asked for."""

    model: LoadedModel
    outputs: list[np.ndarray]
    selected: Sequence[int] | None
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)  # as run (usage metering, drift)
    rows: int = 0
    elapsed_ns: int = 0


def check_batch(model: LoadedModel, rows: int) -> None:
    """Refuse a batch larger than the ``max_batch_size`` the model config advertises (as Triton does)."""
    limit = model.policy.max_batch_size
    if model.batchable and rows > limit:
        raise InvalidArgument(
            f"model {model.name}: batch size {rows} is more than the max_batch_size {limit} its config "
            "advertises; split the request"
        )


async def infer(
    manager: ModelManager, name: str, version: str, variant: str, decode: Decoder, deadline: float | None
) -> InferResult:
    """Run one request end to end on the served version it resolves to.

    ``deadline`` is a ``time.monotonic()`` instant (None = none); one already passed fails at once with
    DEADLINE_EXCEEDED rather than taking a place in the queue.
    """
    global _in_flight
    started = arrived = time.monotonic()  # the deadline check and the elapsed time: one clock read
    try:
        model = manager.resolve(name, version, variant)
    except Unavailable:
        if manager.started.is_set():
            raise
        await manager.wait_started(deadline)  # the service is starting: wait for its models, not fail
        model = manager.resolve(name, version, variant)
        arrived = time.monotonic()
    counts = REQUEST_COUNTS
    _in_flight += 1
    try:
        if deadline is not None and deadline <= arrived:
            raise DeadlineExceeded(f"model {model.name}: the request's deadline had passed when it arrived")
        arrays, selected = decode(model)
        prepared = model.prepare(arrays)
        check_batch(model, prepared.rows)
        batcher = model.batcher
        # The only request in flight: nothing to batch it with, so skip the queue's round trip if it can.
        outputs = batcher.run_alone(prepared.inputs, prepared.rows, prepared.key, deadline) if _in_flight == 1 else None
        if outputs is None:
            outputs = await batcher.infer(prepared.inputs, prepared.rows, prepared.key, deadline)
    except BaseException:
        _in_flight -= 1
        counts.record(model.name, model.version, False, int((time.monotonic() - started) * 1e9))
        raise
    _in_flight -= 1
    elapsed = int((time.monotonic() - started) * 1e9)
    counts.record(model.name, model.version, True, elapsed)
    return InferResult(model, outputs, selected, prepared.inputs, prepared.rows, elapsed)
