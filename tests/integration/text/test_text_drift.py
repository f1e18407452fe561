"""Drift for a text classifier imported from a Hugging Face folder: ``aiaas import FOLDER --calibration
sentences.txt`` registers reference statistics (predicted-class shares, length histograms) with the
checkpoint, its ONNX export finds them through its ``source`` tag, and an inference service serving the
export scores live sentences against them. Real registry, serialization and inference processes; the
folder is the session's distilled topic classifier (small: the export is cheap), pulled from the registry
as a user would hold it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from aiaas.cli.main import main as cli
from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas.training.v1 import training_pb2
from aiaas_services.monitoring.drift import PSI_THRESHOLD
from tests.integration.text.conftest import AIAAS
from tests.support.processes import ServiceProcess, start_inference, wait_model_ready
from tests.support.text_data import TOPICS, rows

# The session's fixtures import, fine-tune and distill MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)

NAME = "topics-imported"
SERVED = f"{NAME}-onnx"
WINDOW = 300  # the inference service's window: 300 skewed rows replace 300 in-distribution ones


@pytest.fixture(scope="module")
def calibrated(
    distilled: training_pb2.Job,
    text_registry: SyncRegistryClient,
    text_serialization: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[int, str]:
    """The student's folder imported with 300 calibration sentences (the three topics), then exported to
    fp32 as production, with the README's commands. (version, the import command's output)."""
    root = tmp_path_factory.mktemp("text-drift")
    folder = root / "folder"
    text_registry.pull(distilled.registered, folder)
    sentences = root / "sentences.txt"
    sentences.write_text("\n".join(text for text, _ in rows(300, seed=21)) + "\n")
    target = ["--target", text_serialization.address, "--timeout", "120"]
    command = [*AIAAS, "import", str(folder), "--name", NAME, "--task", "sequence-classification"]
    done = subprocess.run([*command, "--calibration", str(sentences), *target], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version = int(done.stdout.split(f"registered {NAME}:", 1)[1].split()[0])
    export = [*AIAAS, "export", f"{NAME}:{version}", "--variants", "fp32", "--alias", "production", *target]
    exported = subprocess.run(export, capture_output=True, text=True, timeout=1200)
    assert exported.returncode == 0, exported.stderr
    return version, done.stdout


@pytest.fixture(scope="module")
def monitored(
    calibrated: tuple[int, str], registry_process: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    service = start_inference(
        tmp_path_factory.mktemp("inference-text-drift"),
        registry_process.address,
        SERVED,
        {
            "OTEL_TRACES_EXPORTER": "none",
            "AIAAS_INFERENCE_MONITORING_SAMPLE_EVERY": "1",
            "AIAAS_INFERENCE_MONITORING_WINDOW": str(WINDOW),
            "AIAAS_INFERENCE_MONITORING_INTERVAL_SECONDS": "0.3",
        },
    )
    try:
        wait_model_ready(service, SERVED, 120)
        yield service
    finally:
        service.terminate()


def send(address: str, texts: list[str]) -> list[str]:
    """The texts in requests of 10; the labels the model answered."""
    labels: list[str] = []
    with grpc.insecure_channel(address) as channel:
        client = SyncInferenceClient(channel, timeout=60)
        for start in range(0, len(texts), 10):
            outputs = client.infer_text(SERVED, texts[start : start + 10]).outputs
            labels.extend(label.decode() for label in outputs["label"])
    return labels


def drift(address: str, rows: int) -> monitoring_pb2.GetDriftResponse:
    """GetDrift once the window holds ``rows`` rows and the reference has arrived from the registry."""
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(address) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        while True:
            report = stub.GetDrift(monitoring_pb2.GetDriftRequest(model_name=SERVED), timeout=10)
            if (report.reference and report.window_rows == rows) or time.monotonic() > deadline:
                return report
            time.sleep(0.2)


def test_import_with_calibration_sentences_registers_a_text_reference(
    calibrated: tuple[int, str], text_registry: SyncRegistryClient
) -> None:
    version, printed = calibrated
    assert "reference.json: drift reference statistics from 300 calibration rows" in printed, printed
    stats = json.loads(text_registry.download_bytes((NAME, version), "reference.json"))
    assert stats["input"] == "text" and stats["feature_names"] == ["characters", "words"]
    assert stats["rows"] == 300 and len(stats["features"]) == 2
    assert len(stats["classes"]) == len(TOPICS) and abs(sum(stats["classes"]) - 1.0) < 1e-9
    assert min(stats["classes"]) > 0.1, stats["classes"]  # the student tells the three topics apart


def test_text_training_records_a_reference_too(distilled: training_pb2.Job, text_registry: SyncRegistryClient) -> None:
    """The training service's text checkpoints carry the same statistics, of their training rows."""
    stats = json.loads(text_registry.download_bytes(distilled.registered, "reference.json"))
    assert stats["input"] == "text" and stats["feature_names"] == ["characters", "words"]
    assert stats["source"] == "training split" and stats["rows"] == 72  # 90 rows, 20 % held out
    assert len(stats["classes"]) == len(TOPICS) and abs(sum(stats["classes"]) - 1.0) < 1e-9


def test_text_drift_scores_predictions_and_lengths(
    monitored: ServiceProcess, calibrated: tuple[int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    version, _ = calibrated
    send(monitored.address, [text for text, _ in rows(WINDOW, seed=22)])  # new sentences, the same mix
    calm = drift(monitored.address, WINDOW)
    assert calm.reference == f"registry {NAME}:{version}/reference.json", monitored.log()[-2000:]
    assert {f.name for f in calm.features} == {"characters", "words"}
    assert calm.HasField("prediction_psi") and calm.prediction_psi < PSI_THRESHOLD, calm
    assert calm.max_psi < PSI_THRESHOLD and not calm.drifted, calm

    # Skewed traffic: only sports, three sentences run together per request row.
    sports = [text for text, label in rows(3 * 3 * WINDOW, seed=23) if label == "sports"]
    long_sports = [" ".join(sports[i : i + 3]) for i in range(0, 3 * WINDOW, 3)]
    labels = send(monitored.address, long_sports)
    assert labels.count("sports") > 0.5 * len(labels), labels[:20]
    skewed = drift(monitored.address, WINDOW)
    assert skewed.prediction_psi > PSI_THRESHOLD and skewed.drifted, skewed
    by_name = {f.name: f.psi for f in skewed.features}
    assert by_name["characters"] > PSI_THRESHOLD and by_name["words"] > PSI_THRESHOLD, skewed

    capsys.readouterr()
    assert cli(["monitor", SERVED, "--target", monitored.address]) == 0
    out = capsys.readouterr().out
    assert "DRIFTED" in out and "characters" in out and "words" in out and "prediction PSI" in out, out


def test_calibration_sentences_are_checked_before_the_upload(
    text_serialization: ServiceProcess, tmp_path: Path
) -> None:
    """Not UTF-8, or JSON lines without a text field: INVALID_ARGUMENT saying what to fix, nothing registered."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for payload, fragment in ((b"caf\xe9\n", "not UTF-8"), (b'{"sentence": "hi"}\n', 'no string field "text"')):
        sentences = tmp_path / "sentences.txt"
        sentences.write_bytes(payload)
        command = [*AIAAS, "import", str(folder), "--name", "refused-calibration", "--calibration", str(sentences)]
        done = subprocess.run([*command, "--target", text_serialization.address], capture_output=True, text=True)
        assert done.returncode != 0 and fragment in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
