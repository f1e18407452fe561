"""The README's 5-minute tour, run line by line as written against `aiaas up` (ephemeral ports, a fresh home).

Only two things differ from a user's terminal: `aiaas up &` is started by the test (with --ephemeral-ports,
its addresses handed to the CLI through AIAAS_<SERVICE>_TARGET) and `localhost:8000` becomes the REST port
it reported. Between commands the test waits where a user would (the served version to settle after an
alias move), then checks that `aiaas infer` over gRPC and curl over REST give the same answer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## A 5-minute tour with the CLI") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def start_up(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    up = subprocess.Popen(
        [sys.executable, "-m", "aiaas.cli.main", "up", "--ephemeral-ports", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert up.stdout is not None
    targets: dict[str, str] = {}
    rest = ""
    deadline = time.monotonic() + 240
    for line in up.stdout:
        match = re.match(r"^(registry|training|serialization|inference)\s+(\S+)", line)
        if match:
            targets[match.group(1)] = match.group(2)
        if line.startswith("REST"):
            rest = line.split()[1].removeprefix("http://").removesuffix("/v2")
        if "SERVING" in line or time.monotonic() > deadline:
            break
    assert len(targets) == 4 and rest, (targets, rest)
    return up, targets, rest


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "AIAAS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    lines = tour_lines()
    assert lines[0].startswith("source .venv/bin/activate") and lines[1].startswith("aiaas up &")
    up, targets, rest = start_up(home, env)
    for name, target in targets.items():
        env[f"AIAAS_{name.upper()}_TARGET"] = target
    outputs: dict[str, str] = {}
    try:
        for line in lines[2:]:
            command = line.replace("localhost:8000", rest)
            if command.startswith("aiaas infer"):
                wait_for_version(rest, "1")  # the rollback's swap back to version 1 has landed
            done = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            outputs[line.split()[0] + " " + line.split()[1]] = done.stdout
        versions = outputs["aiaas versions"]
        for number, variant in (("1", "fp32"), ("2", "fp16"), ("3", "int8-static")):
            assert re.search(rf"\b{number}\b.*{variant}", versions), versions
        rest_answer = json.loads(outputs["curl -s"])
        assert rest_answer["model_version"] == "1"
        logits = np.asarray(rest_answer["outputs"][0]["data"], np.float32)
        printed = outputs["aiaas infer"]  # "output[0]: 0=11.07, 5=0.01646, 4=-1.032"
        assert "version 1" in printed, printed
        pairs = [(int(c), float(v)) for c, v in re.findall(r"(\d+)=(-?[0-9.e+-]+)", printed.split("output[0]:")[1])]
        grpc_top = [c for c, _ in pairs]
        np.testing.assert_allclose([v for _, v in pairs], logits[grpc_top], rtol=1e-3)  # printed to 4 digits
        assert grpc_top[:3] == [int(i) for i in np.argsort(-logits)[:3]], (outputs["aiaas infer"], logits)
        assert int(np.argmax(logits)) == 0  # the digit in x.json is a 0
    finally:
        up.send_signal(signal.SIGINT)
        tail = up.communicate(timeout=120)[0]
    assert up.returncode == 0, tail


def wait_for_version(rest: str, version: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = requests.get(f"http://{rest}/v2/models/digits-mlp-onnx/config", timeout=5)
        if reply.status_code == 200 and reply.json()["parameters"]["registry_version"]["string_value"] == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"version {version} of digits-mlp-onnx not served within {seconds}s")
