"""`aiaas export` / `aiaas import` / `aiaas exports` as a user runs them (subprocesses, real services)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import torch

from tests.support.processes import ServiceProcess


def aiaas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli.main", *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_export_prints_the_proof_table(
    serialization_process: ServiceProcess, checkpoints: dict[str, tuple[str, int]]
) -> None:
    model, version = checkpoints["linear"]
    result = aiaas(
        "export",
        f"{model}:{version}",
        "--variants",
        "fp32,int8-dynamic",
        "--target-model",
        "cli-linear",
        "--tolerance",
        "int8-dynamic:max_abs=1e-9",
        "--target",
        serialization_process.address,
    )
    assert result.returncode == 4, result.stderr  # a requested variant was REJECTED
    lines = result.stdout.splitlines()
    assert lines[0].startswith("job ") and "SUCCEEDED" in lines[0]
    assert lines[1].split()[:4] == ["variant", "status", "version", "metric"]
    assert lines[3].split()[:3] == ["fp32", "READY", "cli-linear:1"]
    assert lines[4].split()[:3] == ["int8-dynamic", "REJECTED", "cli-linear:2"]
    assert "int8-dynamic rejected: no INT8 setting passed the proof" in result.stdout
    assert "int8-dynamic search (" in result.stdout  # the search's table
    assert "error: int8-dynamic REJECTED: no INT8 setting passed the proof" in result.stderr
    assert "exported with the" in result.stderr  # progress lines (no TTY: one per event)

    listed = aiaas("exports", "ls", "--json", "--target", serialization_process.address)
    assert listed.returncode == 0 and json.loads(listed.stdout)


def test_import_and_refusals_exit_codes(serialization_process: ServiceProcess, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.onnx.export(
        torch.nn.Linear(4, 2),
        (torch.zeros(1, 4),),
        buffer,  # type: ignore[arg-type]  # torch.onnx.export writes to a file object too
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}},
        opset_version=17,
    )
    good = tmp_path / "model.onnx"
    good.write_bytes(buffer.getvalue())
    result = aiaas(
        "import", str(good), "--name", "cli-imported", "--tag", "team=a", "--target", serialization_process.address
    )
    assert result.returncode == 0, result.stderr
    assert "registered cli-imported:1 (fp32, opset 17)" in result.stdout
    assert "input input: FP32 [-1, 4]" in result.stdout

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(buffer.getvalue()[:50])
    refused = aiaas("import", str(bad), "--name", "cli-bad", "--target", serialization_process.address)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: INVALID_ARGUMENT: model refused:")

    missing = aiaas("export", "nope:1", "--target", serialization_process.address)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    unreachable = aiaas("export", "x:1", "--target", "127.0.0.1:1", "--timeout", "3")
    assert unreachable.returncode == 3


def test_export_prune_neurons_flag(
    serialization_process: ServiceProcess, checkpoints: dict[str, tuple[str, int]]
) -> None:
    model, version = checkpoints["mlp"]
    result = aiaas(
        "export",
        f"{model}:{version}",
        "--prune-neurons",
        "0.25",
        "--target-model",
        "cli-mlp-neurons",
        "--json",
        "--target",
        serialization_process.address,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["reports"][0]
    assert report["accepted"] and report["settings"]["pruned_widths"] == "64->48"
    assert int(report["settings"]["params_after"]) < int(report["settings"]["params_before"])
    refused = aiaas(
        "export", f"{model}:{version}", "--prune-neurons", "0.95", "--target", serialization_process.address
    )
    assert refused.returncode == 1 and "structured_pruning must be in [0, 0.9]" in refused.stderr
