"""Elec2's temporal features are causal: an event's inputs never depend on its own label or on
anything later (labels or rows), through TemporalFeatures alone and through the whole
prequential pipeline (augment, standardise online, scale)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from benchmarks import eval_elec2
from benchmarks.eval_common import have_data
from benchmarks.eval_elec2 import FEATURE_SETS, TemporalFeatures, stream


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([(np.arange(n) % 48) / 47.0, rng.random((n, 5))])  # (n, 6)
    y = [str(v) for v in rng.integers(0, 2, n)]
    return X, y


def _augment(X: np.ndarray, y: list[str], batch: int = 1) -> np.ndarray:
    """The features TemporalFeatures gives each row in a prequential pass."""
    f, out = TemporalFeatures(), []
    for s in range(0, len(y), batch):
        out.append(f.transform_many(X[s : s + batch]))
        f.learn_many(X[s : s + batch], y[s : s + batch])
    return np.concatenate(out)


def _changed_after(X: np.ndarray, y: list[str], t: int, seed: int = 1) -> tuple[np.ndarray, list[str]]:
    """Rows after ``t`` permuted and perturbed, labels from ``t`` on flipped."""
    rng = np.random.default_rng(seed)
    X2 = X.copy()
    X2[t + 1 :] = X[t + 1 :][rng.permutation(len(X) - t - 1)] + rng.normal(0, 0.1, (len(X) - t - 1, 6))
    y2 = y[:t] + ["0" if v == "1" else "1" for v in y[t:]]
    return X2, y2


def test_doctests():
    assert doctest.testmod(eval_elec2).failed == 0


@pytest.mark.parametrize("batch", [1, 4])
def test_features_ignore_the_future_and_the_own_label(batch):
    X, y = _rows(200)
    F = _augment(X, y, batch)
    assert F.shape == (200, TemporalFeatures.dim)
    for t in (0, 1, 37, 100, 198):
        F2 = _augment(*_changed_after(X, y, t), batch=batch)
        np.testing.assert_array_equal(F2[: t + 1], F[: t + 1])  # rows ≤ t: identical
    # the label of event t does appear, but only from the next batch on, as "prev_label"
    # (t = 43 ends a batch for both sizes: with batches, y_prev is the last label revealed)
    t = 43
    y_flip = y[:t] + ["0" if y[t] == "1" else "1"] + y[t + 1 :]
    F3 = _augment(X, y_flip, batch)
    changed = np.flatnonzero((F3 != F).any(axis=1))
    first_after = (t // batch + 1) * batch
    assert changed.tolist() == list(range(first_after, first_after + batch))  # the next batch
    j = TemporalFeatures.names.index("prev_label")
    assert np.flatnonzero(F3[first_after] != F[first_after]).tolist() == [j]
    assert F[first_after, j] == (1.0 if y[t] == "1" else -1.0)


def test_previous_values_and_no_state_change_on_transform():
    X, y = _rows(10)
    F = _augment(X, y)
    names = TemporalFeatures.names
    np.testing.assert_allclose(F[1:, names.index("d_nswprice")], np.diff(X[:, 1]))
    np.testing.assert_allclose(F[1:, names.index("prev_label")], [1.0 if v == "1" else -1.0 for v in y[:-1]])
    assert F[0, names.index("prev_label")] == 0.0 and F[0, names.index("d_nswprice")] == 0.0
    f = TemporalFeatures()
    f.learn_many(X[:3], y[:3])
    np.testing.assert_array_equal(f.transform_many(X[3:5]), f.transform_many(X[3:5]))


class _Recorder:
    """Records the inputs of every prediction; checks predict comes before learn."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []
        self._pending = 0

    def predict_many(self, X: np.ndarray) -> list[str]:
        assert self._pending == 0
        self.seen.append(np.array(X))
        self._pending = len(X)
        return ["1"] * len(X)

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        assert len(y) == self._pending
        np.testing.assert_array_equal(X, self.seen[-1])
        self._pending = 0


@pytest.mark.parametrize("features", list(FEATURE_SETS))
@pytest.mark.parametrize("batch", [1, 3])
def test_the_prequential_pipeline_is_causal(features, batch):
    X, y = _rows(150, seed=2)
    a = _Recorder()
    stream(a, X, y, batch=batch, features=features)
    A = np.concatenate(a.seen)
    assert A.shape[1] == (TemporalFeatures.dim if FEATURE_SETS[features][0] else 6)
    for t in (0, 5, 64, 149):
        b = _Recorder()
        stream(b, *_changed_after(X, y, t), batch=batch, features=features)
        np.testing.assert_array_equal(np.concatenate(b.seen)[: t + 1], A[: t + 1])


@pytest.mark.skipif(not have_data(*eval_elec2.FILES), reason="../shared/data (elec2.csv) not present")
def test_on_elec2_rows_the_own_label_is_not_recoverable():
    X, y = eval_elec2.load(quick=True)
    X, y = X[:600], y[:600]
    F = _augment(X, y)
    j = TemporalFeatures.names.index("prev_label")
    own = np.array([1.0 if v == "1" else -1.0 for v in y])
    np.testing.assert_array_equal(F[1:, j], own[:-1])  # the previous label, exactly
    for t in (10, 300):
        F2 = _augment(*_changed_after(X, y, t))
        np.testing.assert_array_equal(F2[: t + 1], F[: t + 1])
