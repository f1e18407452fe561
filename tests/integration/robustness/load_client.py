"""A separate load process: N concurrent ModelInfer callers for S seconds; prints a JSON summary.

python -m tests.integration.robustness.load_client ADDRESS MODEL CONCURRENCY SECONDS ROWS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import grpc
import numpy as np

from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc


async def run(address: str, model: str, concurrency: int, seconds: float, rows: int) -> dict[str, object]:
    """Closed-loop load; returns counts by status code and latency percentiles."""
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=[rows, 64])
    request.raw_input_contents.append(np.random.default_rng(0).uniform(0, 16, (rows, 64)).astype("<f4").tobytes())
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=30)
                    codes["OK"] += 1
                    latencies.append(time.perf_counter() - started)
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"codes": dict(codes), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


if __name__ == "__main__":
    address, model, concurrency, seconds, rows = sys.argv[1:6]
    print(json.dumps(asyncio.run(run(address, model, int(concurrency), float(seconds), int(rows)))))
