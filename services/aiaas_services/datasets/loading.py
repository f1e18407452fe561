"""Loading, generating and splitting data.

The JSON data spec is ``DataSpec`` as ``json_format.MessageToDict(..., preserving_proto_field_name=True)``
writes it, e.g. ``{"sklearn": "digits"}``, ``{"synthetic": {"kind": "linear", "slope": 3, "intercept": 2,
"noise": 0.1, "num_samples": 1000}}`` or ``{"registry": {"ref": {...}, "artifact_name": "data.npz",
"task": "classification"}}`` plus ``validation_fraction``, ``test_fraction`` and ``no_standardize``.
Registry datasets need their bytes: the caller downloads the artifact and passes ``payload``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import zipfile
from typing import Any

import numpy as np

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
SYNTHETIC_KINDS = ("linear", "blobs", "sequences")
DEFAULT_FRACTION = 0.15


class DataError(ValueError):
    """Data that cannot be loaded or split; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """Seeded splits of RAW (unstandardized) float32 features; y is int64 labels or float32 targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "classification" or "regression"
    num_classes: int  # 0 for regression
    class_names: list[str]
    digest: str  # sha256 of the whole dataset before splitting (see dataset_digest)

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_outputs(self) -> int:
        """Regression targets per sample (1 for a column vector target)."""
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])


def dataset_digest(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 over shapes, dtypes and little-endian bytes of the full x and y: same data, same digest."""
    h = hashlib.sha256()
    for array in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(f"{array.dtype.str}:{array.shape};".encode())
        h.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return "sha256:" + h.hexdigest()


def fit_standardization(x_train: np.ndarray) -> dict[str, list[float]]:
    """Per-feature mean and std of the training split; constant features get std 1 (no division by 0)."""
    mean = x_train.astype(np.float64).mean(axis=0)
    std = x_train.astype(np.float64).std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    return {"mean": [float(v) for v in np.atleast_1d(mean)], "std": [float(v) for v in np.atleast_1d(std)]}


def _load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    # scikit-learn loads here, in a job: the training server imports this package only for its names.
    from sklearn import datasets as sk

    if name not in SKLEARN_DATASETS:
        raise DataError(f"unknown scikit-learn dataset {name!r}; choose one of {', '.join(SKLEARN_DATASETS)}")
    bunch = getattr(sk, f"load_{name}")()
    if name == "diabetes":
        return bunch.data, bunch.target, "regression", []
    names = [str(n) for n in getattr(bunch, "target_names", [])]
    return bunch.data, bunch.target, "classification", names


def _synthetic(block: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    kind = str(block.get("kind", ""))
    if kind not in SYNTHETIC_KINDS:
        raise DataError(f"synthetic.kind must be one of {', '.join(SYNTHETIC_KINDS)}, got {kind!r}")
    samples = int(block.get("num_samples") or 1000)
    if not 10 <= samples <= 10_000_000:
        raise DataError(f"synthetic.num_samples must be between 10 and 10000000, got {samples}")
    noise = float(block.get("noise") or 0.0)
    rng = np.random.default_rng(seed)
    if kind == "linear":
        features = int(block.get("num_features") or 1)
        slope, intercept = float(block.get("slope", 0.0)), float(block.get("intercept", 0.0))
        x = rng.uniform(-2.0, 2.0, size=(samples, features))
        y = slope * x.sum(axis=1) + intercept + noise * rng.standard_normal(samples)
        return x, y, "regression", []
    classes = int(block.get("num_classes") or 3)
    if classes < 2:
        raise DataError(f"synthetic.num_classes must be at least 2, got {classes}")
    if kind == "blobs":
        features = int(block.get("num_features") or 2)
        centers = rng.uniform(-5.0, 5.0, size=(classes, features))
        labels = rng.integers(0, classes, size=samples)
        x = centers[labels] + (noise or 1.0) * rng.standard_normal((samples, features))
        return x, labels, "classification", [f"blob{i}" for i in range(classes)]
    # sequences: class c rises with slope c-th of linspace(-1, 1); a random offset and noise on top
    steps = int(block.get("num_features") or 16)
    slopes = np.linspace(-1.0, 1.0, classes)
    labels = rng.integers(0, classes, size=samples)
    t = np.linspace(0.0, 1.0, steps)
    offsets = rng.uniform(-1.0, 1.0, size=(samples, 1))
    x = offsets + slopes[labels][:, None] * t[None, :] * 2.0 + (noise or 0.1) * rng.standard_normal((samples, steps))
    return x, labels, "classification", [f"slope{s:+.2f}" for s in slopes]


def arrays_from_bytes(payload: bytes, artifact_name: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y from an ``.npz`` (arrays ``x`` and ``y``; never pickled objects) or a CSV whose last
    column is the target (a non-numeric first row is taken as a header)."""
    if artifact_name.endswith(".npz"):
        if not zipfile.is_zipfile(io.BytesIO(payload)):
            # np.load would fall back to unpickling anything that is neither a zip nor a .npy file
            raise DataError(f"{artifact_name} is not a readable .npz file (it is not a zip archive)")
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                if "x" not in archive or "y" not in archive:
                    raise DataError(f"{artifact_name} must hold arrays named 'x' and 'y', has {sorted(archive.files)}")
                return np.asarray(archive["x"]), np.asarray(archive["y"])
        except DataError:
            raise
        except ValueError as exc:
            if "allow_pickle" in str(exc):  # object arrays: loading them would unpickle arbitrary code
                raise DataError(
                    f"{artifact_name} holds object arrays, which load only by unpickling and are refused; "
                    "save x and y as numeric arrays"
                ) from exc
            raise DataError(f"{artifact_name} is not a readable .npz file (ValueError)") from exc
        except Exception as exc:
            raise DataError(f"{artifact_name} is not a readable .npz file ({type(exc).__name__})") from exc
    if artifact_name.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(payload.decode("utf-8", errors="replace"))))
        rows = [r for r in rows if r]
        if rows and not _numeric(rows[0]):
            rows = rows[1:]
        if not rows or len(rows[0]) < 2:
            raise DataError(f"{artifact_name} needs at least one feature column and a target column")
        try:
            table = np.array([[float(v) for v in row] for row in rows])
        except ValueError as exc:
            raise DataError(f"{artifact_name} has a non-numeric value or ragged rows") from exc
        return table[:, :-1], table[:, -1]
    raise DataError(f"dataset artifact {artifact_name!r} must end in .npz or .csv")


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def load_arrays(
    data_spec: dict[str, Any], seed: int, payload: bytes | None = None
) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """The full dataset (x, y, task, class names) before splitting."""
    if data_spec.get("sklearn"):
        x, y, task, names = _load_sklearn(str(data_spec["sklearn"]))
    elif "synthetic" in data_spec:
        x, y, task, names = _synthetic(dict(data_spec["synthetic"] or {}), seed)
    elif "registry" in data_spec:
        block = dict(data_spec["registry"] or {})
        if payload is None:
            raise DataError("a registry dataset needs its artifact bytes (payload); download it first")
        x, y = arrays_from_bytes(payload, str(block.get("artifact_name") or "data.npz"))
        task = str(block.get("task") or "classification")
        if task not in ("classification", "regression"):
            raise DataError(f"registry.task must be 'classification' or 'regression', got {task!r}")
        names = []
    else:
        raise DataError("data needs a source: sklearn, synthetic or registry")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} rows but y has {len(y)}")
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or infinite values")
    if task == "classification":
        values, y = np.unique(np.asarray(y), return_inverse=True)
        y = y.astype(np.int64).reshape(-1)
        if not names or len(names) != len(values):
            names = [str(v) for v in values]
        if len(values) < 2:
            raise DataError("classification data needs at least 2 distinct labels")
    else:
        y = np.asarray(y, dtype=np.float32)
        if not np.isfinite(y).all():
            raise DataError("targets contain NaN or infinite values")
    return x, y, task, names


def split_arrays(
    x: np.ndarray, y: np.ndarray, seed: int, validation_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with the seed, then cut test, validation and train (in that order)."""
    val_f = validation_fraction or DEFAULT_FRACTION
    test_f = test_fraction or DEFAULT_FRACTION
    if not (0 < val_f < 1 and 0 < test_f < 1 and val_f + test_f < 0.9):
        raise DataError(
            f"validation_fraction={val_f} and test_fraction={test_f} must be in (0, 1) and leave at least "
            "10% for training"
        )
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_f))
    n_val = max(1, round(n * val_f))
    if n - n_test - n_val < 1:
        raise DataError(f"{n} samples are too few to split into train, validation and test")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return x[train], y[train], x[val], y[val], x[test], y[test]


def load_splits(data_spec: dict[str, Any], seed: int, payload: bytes | None = None) -> Splits:
    """Deterministic splits for a data spec and seed (same inputs, same arrays, same digest)."""
    x, y, task, names = load_arrays(data_spec, seed, payload)
    x_train, y_train, x_val, y_val, x_test, y_test = split_arrays(
        x,
        y,
        seed,
        float(data_spec.get("validation_fraction") or 0.0),
        float(data_spec.get("test_fraction") or 0.0),
    )
    return Splits(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        task=task,
        num_classes=len(names) if task == "classification" else 0,
        class_names=names,
        digest=dataset_digest(x, y),
    )
