"""`aiaas infer` and the Python client (sync and asyncio) against the standalone server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from aiaas.client.inference import InferenceClient, SyncInferenceClient, build_request
from tests.support.processes import ServiceProcess


def aiaas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiaas.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_infer_from_npy_and_json_with_top_k(standalone: ServiceProcess, tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.json").write_text(json.dumps(x[0].tolist()))
    shown = aiaas("infer", "mlp", "--input", str(tmp_path / "x.npy"), "--top-k", "3", "--target", standalone.address)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("model mlp version 1") and "output[1]:" in shown.stdout
    as_json = aiaas(
        "infer", "mlp", "--input", str(tmp_path / "x.json"), "--json", "--top-k", "2", "--target", standalone.address
    )
    payload = json.loads(as_json.stdout)
    assert len(payload["outputs"]["output"]) == 1 and len(payload["top_k"]["output"][0]) == 2
    expected = SyncInferenceClient.connect(standalone.address).infer("mlp", {"input": x[:1]}).outputs["output"]
    np.testing.assert_allclose(payload["outputs"]["output"], expected, rtol=1e-5)


def test_cli_exit_codes(standalone: ServiceProcess, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 64), np.float32))
    refused = aiaas("infer", "ghost", "--input", str(tmp_path / "x.npy"), "--target", standalone.address)
    assert refused.returncode == 1 and refused.stderr.startswith("error: NOT_FOUND:")
    missing = aiaas("infer", "mlp", "--input", str(tmp_path / "nope.npy"), "--target", standalone.address)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unreachable = aiaas("infer", "mlp", "--input", str(tmp_path / "x.npy"), "--target", "127.0.0.1:1", "--timeout", "2")
    assert unreachable.returncode == 3


async def test_async_client_numpy_in_out_stream_and_deadline(standalone: ServiceProcess) -> None:
    async with grpc.aio.insecure_channel(standalone.address) as channel:
        client = InferenceClient(channel)
        assert await client.ready() and await client.ready("mlp")
        words = np.array([["a", "bé"]], dtype=object)
        result = await client.infer("bytes", {"input": words}, request_id="r1")
        assert result.id == "r1" and result.outputs["output"].tolist() == [[b"a", "bé".encode()]]
        half = np.array([[1, 2, 3, 4]], dtype=np.float16)
        assert (await client.infer("fp16", {"input": half})).outputs["output"].tolist() == [[2, 4, 6, 8]]
        requests = [build_request("mlp", {"input": np.ones((1, 64), np.float32)}, request_id=str(i)) for i in range(3)]
        answers = [a async for a in client.stream(requests)]
        assert [a.id for a in answers if not isinstance(a, str)] == ["0", "1", "2"]
        config = await client.config("mlp")
        assert config.parameters["execution_provider"].string_value == "CPUExecutionProvider"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.infer("slow", {"input": np.ones((20000, 64), np.float32)}, timeout=0.001)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
