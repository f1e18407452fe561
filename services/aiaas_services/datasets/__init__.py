"""Datasets: seeded, deterministic train/validation/test splits of RAW features (no gRPC, no torch).

``load_splits(data_spec, seed)`` reads the JSON form of a training request's ``DataSpec``. The
training service trains on it; the serialization service calls it with the checkpoint's ``spec.json``
``data`` and ``seed`` to get the very same held-out test split.
"""

from aiaas_services.datasets.loading import (
    SKLEARN_DATASETS,
    DataError,
    Splits,
    arrays_from_bytes,
    dataset_digest,
    fit_standardization,
    load_arrays,
    load_splits,
    split_arrays,
)

__all__ = [
    "SKLEARN_DATASETS",
    "DataError",
    "Splits",
    "arrays_from_bytes",
    "dataset_digest",
    "fit_standardization",
    "load_arrays",
    "load_splits",
    "split_arrays",
]
