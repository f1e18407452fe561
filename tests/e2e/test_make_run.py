"""`make run ARGS=--once`'s entry point, in a fresh AIAAS_HOME, checked by what it prints and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_pipeline_once_trains_exports_deploys_and_serves(tmp_path: Path) -> None:
    home = tmp_path / "home"
    summary_path = tmp_path / "summary.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiaas_services.demo",
            "--once",
            "--ephemeral-ports",
            "--home",
            str(home),
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "AIAAS_HOME": str(home)},
    )
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted((home / "logs").glob("*.log")))
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}\n{logs}"
    out = completed.stdout
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "trace "):
        assert step in out, out
    assert "stopped: inference exit 0, training exit 0, serialization exit 0, registry exit 0" in out

    summary = json.loads(summary_path.read_text())
    by_variant: dict[tuple[str, str], float] = {(v["model"], v["variant"]): v["accuracy"] for v in summary["variants"]}
    for model in ("digits-mlp-onnx", "digits-cnn-onnx"):
        assert by_variant[(model, "fp32")] >= 0.95, summary
        int8 = [acc for (m, variant), acc in by_variant.items() if m == model and variant.startswith("int8")]
        assert int8, f"no INT8 variant of {model} was accepted: {summary}"
        assert max(int8) >= 0.95, summary
    assert set(summary["production"]) == {"digits-mlp-onnx", "digits-cnn-onnx"}
    for model, version in summary["production"].items():  # the fastest as measured, among accepted variants
        measured = [v for v in summary["variants"] if v["model"] == model]
        fastest = min(measured, key=lambda v: (v["p50_ms"], v["p99_ms"]))
        assert fastest["version"] == version and fastest["production"], measured
        assert f"production → {model} v{version} ({fastest['variant']}): fastest p50 here" in out
    assert "REST (KServe V2): http://127.0.0.1:" in out
    assert "curl -s http://127.0.0.1:" in out and "/v2/models/digits-mlp-onnx/infer -d '" in out
    assert "the whole tree: aiaas trace show " in out
    assert len(summary["trace_id"]) == 32

    # The text leg: MiniLM imported, fine-tuned (head only), exported with the tokenizer in the graph, served;
    # one sentence answered with the same label over gRPC and REST.
    text = summary["text"]
    for step in ("[text 1/4]", "[text 2/4]", "[text 3/4]", "[text 4/4]"):
        assert step in out, out
    assert text["served_model"] == "topics-onnx" and text["version"] >= 1, text
    assert text["accuracy"] >= text["majority_baseline"] + 0.3, text
    assert text["grpc_label"] in ("sports", "cooking", "technology"), text
    assert text["rest_label"] == text["grpc_label"], text
    assert f"gRPC (ModelInfer, BYTES tensor): {text['grpc_label']}" in out
    assert f"REST (POST /v2/models/topics-onnx/infer): {text['rest_label']}" in out
    assert '/v2/models/topics-onnx/infer -d \'{"inputs": [{"name": "text"' in out
