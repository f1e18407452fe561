"""The README's REST curl lines, run exactly as written (only the address swapped for the test server's)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.inference.examples import export_mlp
from tests.integration.inference.test_protocol import raw_request
from tests.support.processes import ServiceProcess, start_service

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_curl_commands() -> list[str]:
    """The commands of the first bash block under the README's REST heading (a new one at each `curl`)."""
    text = README.read_text()
    section = text[text.index("### REST: the same protocol over HTTP/JSON") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README's REST section lost its bash block"
    commands: list[str] = []
    for line in block.group(1).splitlines():
        if line.startswith("curl "):
            commands.append(line)
        elif commands and line.strip():
            commands[-1] += "\n" + line
    return commands


@pytest.fixture(scope="module")
def digits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    home = tmp_path_factory.mktemp("readme-rest")
    export_mlp(home / "models" / "digits-mlp-onnx" / "1" / "model.onnx", seed=7)
    service = start_service("inference", home, env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(home / "models")})
    yield service
    service.terminate()


def test_readme_curl_lines_work_as_written(digits_server: ServiceProcess) -> None:
    commands = readme_curl_commands()
    assert len(commands) == 4 and all("localhost:8000" in c for c in commands)
    outputs = []
    for command in commands:
        line = command.replace("localhost:8000", f"127.0.0.1:{digits_server.http_port}")
        completed = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
        assert completed.returncode == 0, (command, completed.stderr)
        outputs.append(completed.stdout)
    assert outputs[0].strip() == "200"
    assert json.loads(outputs[1])["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    answer = json.loads(outputs[2])["outputs"][0]
    assert answer["shape"] == [1, 10]
    sent = json.loads(commands[2].split("-d '", 1)[1].rstrip("'"))["inputs"][0]["data"]
    with grpc.insecure_channel(digits_server.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        expected = stub.ModelInfer(raw_request("digits-mlp-onnx", input=np.asarray([sent], np.float32)))
    assert np.asarray(answer["data"], np.float32).tobytes() == expected.raw_output_contents[0]
    assert "dimension 1 is 3" in json.loads(outputs[3])["error"]
