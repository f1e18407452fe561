"""Our numpy metrics agree with scikit-learn's, and the training loop's building blocks behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from aiaas_services.training.evaluation import confusion_matrix, macro_scores, r2_score
from aiaas_services.training.spec import TrainConfig
from aiaas_services.training.trainer import learning_rate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_scores_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 200)
    predictions = np.where(rng.random(200) < 0.7, y, rng.integers(0, 5, 200))
    predictions[predictions == 4] = 3  # a class never predicted: zero_division=0
    confusion = confusion_matrix(y, predictions, 5)
    np.testing.assert_array_equal(confusion, skm.confusion_matrix(y, predictions, labels=range(5)))
    want = skm.precision_recall_fscore_support(y, predictions, average="macro", labels=range(5), zero_division=0)
    assert macro_scores(confusion) == pytest.approx(want[:3])


def test_r2_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 2))
    prediction = target + rng.normal(scale=0.3, size=(50, 2))
    assert r2_score(target, prediction) == pytest.approx(skm.r2_score(target, prediction))


def test_learning_rate_schedules() -> None:
    step = TrainConfig(learning_rate=0.1, schedule="step", step_size=2, gamma=0.5, epochs=6)
    assert [learning_rate(step, e) for e in range(1, 6)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    cosine = TrainConfig(learning_rate=0.1, schedule="cosine", epochs=4)
    assert learning_rate(cosine, 1) == pytest.approx(0.1) and learning_rate(cosine, 3) == pytest.approx(0.05)
    assert learning_rate(TrainConfig(learning_rate=0.3), 17) == 0.3
