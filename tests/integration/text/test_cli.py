"""The commands the README's "Text models" section shows: `aiaas import FOLDER` and `aiaas infer --text`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.text.conftest import SERVED, STUDENT_SERVED, minilm_folder
from tests.integration.text.test_import_export_serve import wait_ready
from tests.support.processes import ServiceProcess

# The session's fixtures import, fine-tune and export MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)

AIAAS = [sys.executable, "-m", "aiaas.cli.main"]


def aiaas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIAAS, *args], capture_output=True, text=True, timeout=300)


def test_import_a_folder_from_the_cli(text_serialization: ServiceProcess) -> None:
    done = aiaas("import", str(minilm_folder()), "--name", "minilm-cli", "--target", text_serialization.address)
    assert done.returncode == 0, done.stderr
    assert "registered minilm-cli:1 (Hugging Face checkpoint)" in done.stdout
    wrong = aiaas("import", str(minilm_folder()), "--name", "x", "--task", "classification")
    assert wrong.returncode != 0 and "embedding or sequence-classification" in wrong.stderr


def test_infer_text_from_the_cli(text_inference: ServiceProcess, text_infer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wait_ready(text_infer, SERVED)
    done = aiaas("infer", SERVED, "--text", "Hello, world!", "--target", text_inference.address, "--json")
    assert done.returncode == 0, done.stderr
    embedding = json.loads(done.stdout)["outputs"]["embedding"]
    assert len(embedding) == 1 and len(embedding[0]) == 384
    lines = tmp_path / "lines.txt"
    lines.write_text("first line\nsecond line\n", "utf-8")
    done = aiaas("infer", SERVED, "--text-file", str(lines), "--text", "third", "--target", text_inference.address)
    assert done.returncode == 0, done.stderr
    assert "embedding [3, 384]" in done.stdout


def test_infer_the_distilled_student_from_the_cli(text_inference: ServiceProcess, text_infer) -> None:  # type: ignore[no-untyped-def]
    wait_ready(text_infer, STUDENT_SERVED)
    text = "The chef simmered a spicy curry."
    done = aiaas("infer", STUDENT_SERVED, "--text", text, "--target", text_inference.address, "--json")
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert outputs["label"] == ["cooking"] and len(outputs["probabilities"][0]) == 3
