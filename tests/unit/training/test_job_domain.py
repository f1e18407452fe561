"""The job domain without processes or gRPC: request parsing and checks, the job store, resumable training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aiaas.training.v1 import training_pb2
from aiaas_services.training import codec
from aiaas_services.training.job import run_job
from aiaas_services.training.paths import CHECKPOINT_FILE, JobRequest
from aiaas_services.training.spec import ConfigError, JobSpec
from aiaas_services.training.store import QUEUED, RUNNING, JobRecord, JobStore
from aiaas_services.training.trainer import Cancelled, Hooks


def iris_spec(epochs: int = 4) -> training_pb2.TrainingSpec:
    spec = training_pb2.TrainingSpec(model_name="iris", epochs=epochs, batch_size=16, seed=9)
    spec.architecture.mlp.hidden_sizes.append(8)
    spec.architecture.mlp.dropout = 0.2  # dropout makes RNG handling matter on resume
    spec.data.sklearn = "iris"
    return spec


def job_spec(spec: training_pb2.TrainingSpec) -> JobSpec:
    return codec.job_spec_from_proto(spec)


def test_defaults_are_resolved() -> None:
    config = codec.train_config_from_proto(training_pb2.TrainingSpec())
    assert (config.optimizer, config.learning_rate, config.epochs, config.batch_size) == ("adam", 1e-3, 20, 64)
    assert (config.schedule, config.device, config.world_size) == ("constant", "auto", 1)
    spec = training_pb2.TrainingSpec()
    spec.optimizer.kind = training_pb2.OPTIMIZER_KIND_ADAMW
    spec.optimizer.schedule = training_pb2.LR_SCHEDULE_COSINE
    assert codec.train_config_from_proto(spec).optimizer == "adamw"
    assert codec.train_config_from_proto(spec).schedule == "cosine"


def test_a_job_spec_survives_the_store_form() -> None:
    spec = iris_spec()
    spec.export.variants.append("fp16")
    spec.data.registry.ref.model_name = "data"
    spec.data.registry.ref.alias = "latest"
    parsed = job_spec(spec)
    assert parsed.dataset is not None and (parsed.dataset.alias, parsed.dataset.artifact_name) == ("latest", "data.npz")
    assert parsed.export is not None and parsed.export.variants == ("fp16",)
    assert JobSpec.from_json(parsed.to_json()) == parsed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: setattr(s, "epochs", 100_000), "spec.epochs must be between"),
        (lambda s: setattr(s, "world_size", 64), "spec.world_size"),
        (lambda s: setattr(s, "device", "tpu"), "spec.device"),
        (lambda s: setattr(s.data.synthetic, "kind", "spiral"), "synthetic.kind"),
        (lambda s: (s.architecture.transformer.SetInParent(), setattr(s.architecture.transformer, "num_heads", 3)),  # type: ignore[func-returns-value]
         "must divide d_model"),
    ],
)  # fmt: skip
def test_requests_that_cannot_train_are_refused(change: object, message: str) -> None:
    spec = iris_spec()
    change(spec)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        job_spec(spec).check(max_epochs=10_000, max_world_size=8)


def test_store_sequences_events_per_job_and_pages(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    for index in range(5):
        store.insert(JobRecord(job_id=f"job{index}", state=QUEUED, spec=job_spec(iris_spec()), created_at=float(index)))
    assert [store.append_event("job1", QUEUED, "state_changed", "queued").sequence for _ in range(3)] == [1, 2, 3]
    assert store.append_event("job2", RUNNING, "message", "hello").sequence == 1
    assert [e.sequence for e in store.events("job1", after_sequence=1)] == [2, 3]
    first = store.list_jobs(2)
    assert [j.job_id for j in first] == ["job4", "job3"]
    assert [j.job_id for j in store.list_jobs(2, before_seq=first[-1].seq)] == ["job2", "job1"]
    store.close()
    reopened = JobStore(tmp_path / "jobs.db")  # durable across a restart
    assert reopened.count(QUEUED) == 5 and len(reopened.events("job1")) == 3


def test_resuming_from_an_epoch_checkpoint_gives_the_same_weights(tmp_path: Path) -> None:
    spec = job_spec(iris_spec(epochs=4))
    straight = tmp_path / "straight"
    run_job(JobRequest("a", spec, str(straight)), Hooks())

    interrupted = tmp_path / "interrupted"
    epochs_seen: list[int] = []

    def cancel_after_two() -> bool:
        return len(epochs_seen) >= 2

    hooks = Hooks(on_epoch=lambda record: epochs_seen.append(record["epoch"]), cancelled=cancel_after_two)
    with pytest.raises(Cancelled):
        run_job(JobRequest("b", spec, str(interrupted)), hooks)
    assert (interrupted / CHECKPOINT_FILE).exists() and epochs_seen == [1, 2]
    replayed: list[int] = []
    run_job(JobRequest("b", spec, str(interrupted), resume=True), Hooks(on_epoch=lambda r: replayed.append(r["epoch"])))
    assert replayed == [1, 2, 3, 4]  # the history is replayed, then epochs 3 and 4 are trained

    from safetensors.torch import load_file

    a = load_file(str(straight / "result" / "weights.safetensors"))
    b = load_file(str(interrupted / "result" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_from_before_the_history_had_its_own_entry_still_resumes(tmp_path: Path) -> None:
    """Older services kept the epoch history inside the "progress" metadata; a job they interrupted
    resumes under this one, with the same weights as a straight run."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save

    spec = job_spec(iris_spec(epochs=3))
    straight = tmp_path / "straight"
    run_job(JobRequest("a", spec, str(straight)), Hooks())
    old = tmp_path / "old"
    seen: list[int] = []
    with pytest.raises(Cancelled):
        run_job(
            JobRequest("b", spec, str(old)), Hooks(on_epoch=lambda r: seen.append(1), cancelled=lambda: len(seen) >= 2)
        )
    path = old / CHECKPOINT_FILE
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    progress = {**json.loads(metadata["progress"]), "history": json.loads(metadata.pop("history"))}
    path.write_bytes(save(load_file(str(path)), metadata={**metadata, "progress": json.dumps(progress)}))

    replayed: list[int] = []
    run_job(JobRequest("b", spec, str(old), resume=True), Hooks(on_epoch=lambda r: replayed.append(r["epoch"])))
    assert replayed == [1, 2, 3]
    a = load_file(str(straight / "result" / "weights.safetensors"))
    b = load_file(str(old / "result" / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_checkpoint_fails_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(RuntimeError, match="cannot resume: the epoch checkpoint is unreadable"):
        run_job(JobRequest("c", job_spec(iris_spec()), str(tmp_path), resume=True), Hooks())


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path) -> None:
    spec = iris_spec(epochs=50)
    spec.early_stopping.metric = "accuracy"
    spec.early_stopping.patience = 2
    spec.early_stopping.min_delta = 0.5  # no later epoch can beat the first by half a point of accuracy
    messages: list[str] = []
    epochs: list[int] = []
    result = run_job(
        JobRequest("e", job_spec(spec), str(tmp_path)),
        Hooks(on_epoch=lambda r: epochs.append(r["epoch"]), on_message=messages.append),
    )
    assert result["stopped_early"] and result["epochs_run"] == 3 and epochs == [1, 2, 3]
    assert any("early stopping after epoch 3" in m and "weights of epoch 1" in m for m in messages)


def test_sgd_step_schedule_l1_and_clipping_train(tmp_path: Path) -> None:
    spec = iris_spec(epochs=4)
    spec.optimizer.kind = training_pb2.OPTIMIZER_KIND_SGD
    spec.optimizer.learning_rate = 0.2
    spec.optimizer.momentum = 0.9
    spec.optimizer.weight_decay = 1e-4
    spec.optimizer.l1_penalty = 1e-4
    spec.optimizer.grad_clip_norm = 1.0
    spec.optimizer.schedule = training_pb2.LR_SCHEDULE_STEP
    spec.optimizer.step_size = 2
    spec.optimizer.gamma = 0.5
    history: list[dict] = []
    result = run_job(JobRequest("s", job_spec(spec), str(tmp_path)), Hooks(on_epoch=history.append))
    assert [r["learning_rate"] for r in history] == pytest.approx([0.2, 0.2, 0.1, 0.1])
    assert result["test_metrics"]["accuracy"] > 0.6
    assert (tmp_path / "result" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    reference = json.loads((tmp_path / "result" / "reference.json").read_text())
    assert len(reference["features"]) == result["num_features"]
    assert len(reference["classes"]) == result["num_classes"]
    assert sum(reference["classes"]) == pytest.approx(1.0)


def test_the_worker_warm_up_trains_a_real_epoch_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker warms up on a one-epoch job before it reports ready; a failure there would only be
    logged (the worker still serves), so check here that it succeeds and cleans up its folder."""
    import tempfile

    from aiaas_services.training import worker_process

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with caplog.at_level("WARNING"):
        worker_process._warm_up(torch_threads=1)
    assert not [r for r in caplog.records if "warm-up failed" in r.getMessage()]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("aiaas-warm-up-")]
