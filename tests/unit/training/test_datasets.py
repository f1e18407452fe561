"""Datasets: deterministic seeded splits, digests, synthetic generators and uploaded files."""

from __future__ import annotations

import io

import numpy as np
import pytest

from aiaas_services.datasets import DataError, dataset_digest, fit_standardization, load_splits


@pytest.mark.parametrize(
    ("name", "task", "classes", "features"),
    [
        ("digits", "classification", 10, 64),
        ("iris", "classification", 3, 4),
        ("wine", "classification", 3, 13),
        ("breast_cancer", "classification", 2, 30),
        ("diabetes", "regression", 0, 10),
    ],
)
def test_sklearn_datasets(name: str, task: str, classes: int, features: int) -> None:
    splits = load_splits({"sklearn": name}, seed=1)
    assert splits.task == task and splits.num_classes == classes and splits.num_features == features
    total = len(splits.x_train) + len(splits.x_val) + len(splits.x_test)
    assert abs(len(splits.x_test) / total - 0.15) < 0.01
    assert splits.x_train.dtype == np.float32


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b = load_splits({"sklearn": "digits"}, 7), load_splits({"sklearn": "digits"}, 7)
    c = load_splits({"sklearn": "digits"}, 8)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert a.digest == b.digest == c.digest  # the dataset is the same, only its split differs
    assert not np.array_equal(a.x_test, c.x_test)


def test_linear_generator_follows_its_formula() -> None:
    spec = {"synthetic": {"kind": "linear", "slope": 3.0, "intercept": 2.0, "noise": 0.0, "num_samples": 200}}
    splits = load_splits(spec, 0)
    np.testing.assert_allclose(splits.y_train, 3.0 * splits.x_train[:, 0] + 2.0, rtol=1e-5, atol=1e-5)
    assert splits.task == "regression"
    assert load_splits({**spec, "synthetic": {**spec["synthetic"], "noise": 0.1}}, 0).digest != splits.digest


def test_blobs_and_sequences() -> None:
    blobs = load_splits({"synthetic": {"kind": "blobs", "num_classes": 4, "num_features": 3}}, 0)
    assert blobs.num_classes == 4 and blobs.num_features == 3
    seqs = load_splits({"synthetic": {"kind": "sequences", "num_classes": 2, "num_features": 12}}, 0)
    assert seqs.num_classes == 2 and seqs.num_features == 12


def test_npz_and_csv_payloads() -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.array([5, 9] * 10)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    spec = {"registry": {"artifact_name": "data.npz", "task": "classification"}}
    splits = load_splits(spec, 0, payload=buffer.getvalue())
    assert splits.class_names == ["5", "9"] and set(splits.y_train.tolist()) <= {0, 1}
    csv_bytes = b"a,b,target\n" + b"\n".join(f"{i},{i * 2},{i * 0.5}".encode() for i in range(30))
    reg = load_splits({"registry": {"artifact_name": "d.csv", "task": "regression"}}, 0, payload=csv_bytes)
    assert reg.num_features == 2 and reg.task == "regression"


@pytest.mark.parametrize(
    ("spec", "payload", "message"),
    [
        ({"sklearn": "mnist"}, None, "unknown scikit-learn dataset"),
        ({"synthetic": {"kind": "spiral"}}, None, "synthetic.kind"),
        ({}, None, "needs a source"),
        ({"registry": {"artifact_name": "d.npz"}}, None, "payload"),
        ({"registry": {"artifact_name": "d.npz"}}, b"not a zip", "not a readable .npz"),
        ({"registry": {"artifact_name": "d.parquet"}}, b"", "must end in .npz or .csv"),
        ({"sklearn": "iris", "test_fraction": 0.5, "validation_fraction": 0.45}, None, "leave at least"),
    ],
)
def test_bad_data_is_refused_with_a_reason(spec: dict, payload: bytes | None, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_splits(spec, 0, payload=payload)


def test_standardization_and_digest() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    assert fit_standardization(x) == {"mean": [2.0, 5.0], "std": [1.0, 1.0]}
    assert dataset_digest(x, np.array([0, 1])) != dataset_digest(x, np.array([1, 0]))
