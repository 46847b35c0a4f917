"""LogME against a direct maximisation of the evidence; LogME and LEEP order features sensibly."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from orchestrator.insights import leep, logme


def _direct_log_evidence(features: np.ndarray, y: np.ndarray) -> float:
    """max over alpha, beta of log N(y; 0, F F^T / alpha + I / beta): the evidence of Bayesian linear
    regression written as the marginal Gaussian of the targets, maximised numerically."""
    n = len(y)
    gram = features @ features.T

    def negative(log_params: np.ndarray) -> float:
        alpha, beta = np.exp(log_params)
        return -multivariate_normal(np.zeros(n), gram / alpha + np.eye(n) / beta).logpdf(y)

    result = minimize(negative, x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12})
    assert result.success, result.message
    return -result.fun


def _direct_logme(features: np.ndarray, labels: np.ndarray) -> float:
    per_class = [_direct_log_evidence(features, (labels == c).astype(float)) for c in np.unique(labels)]
    return float(np.mean(per_class) / len(labels))


def _informative(rng, labels: np.ndarray, dim: int, signal: float) -> np.ndarray:
    features = rng.normal(size=(len(labels), dim))
    features[:, : labels.max() + 1] += signal * np.eye(labels.max() + 1)[labels]
    return features


@pytest.mark.parametrize("n,dim", [(60, 6), (24, 40)], ids=["more_images_than_dims", "more_dims_than_images"])
def test_logme_equals_the_directly_maximised_evidence(n, dim):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    features = _informative(rng, labels, dim, signal=1.5)
    assert logme(features, labels) == pytest.approx(_direct_logme(features, labels), rel=1e-6)


def test_logme_orders_separable_features_above_noisy_and_noise():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 10)
    separable = _informative(rng, labels, 32, signal=8.0)
    noisy = _informative(rng, labels, 32, signal=1.0)
    noise = rng.normal(size=(50, 32))
    scores = [logme(f, labels) for f in (separable, noisy, noise)]
    assert scores[0] > scores[1] > scores[2], scores
    dead = np.zeros((50, 32))  # features that explain nothing still get a finite, low score
    assert np.isfinite(logme(dead, labels)) and logme(dead, labels) < scores[1]


def test_logme_does_not_depend_on_feature_scale():
    # Scaling the features is absorbed by the prior precision alpha, over which LogME maximises.
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 8)
    features = _informative(rng, labels, 10, signal=2.0)
    assert logme(100.0 * features, labels) == pytest.approx(logme(features, labels), rel=1e-6)


def test_logme_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="features"):
        logme(np.zeros((5, 3)), np.zeros(4))


def test_leep_of_a_predictive_source_head_beats_a_uniform_one():
    labels = np.repeat(np.arange(4), 5)
    # Each target class is exactly one (shuffled) source class: the head predicts the target perfectly.
    source_class = np.array([2, 0, 3, 1])[labels]
    perfect = np.eye(6)[source_class]
    uniform = np.full((len(labels), 6), 1 / 6)
    assert leep(perfect, labels) == pytest.approx(0.0, abs=1e-12)
    assert leep(uniform, labels) == pytest.approx(-np.log(4))  # the class prior: chance
    # A head that gives every image the same source class, however confidently, is chance too.
    ignores_the_image = np.eye(6)[np.zeros(len(labels), dtype=int)]
    assert leep(ignores_the_image, labels) == pytest.approx(-np.log(4))
