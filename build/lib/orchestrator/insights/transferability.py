"""Transferability scores computed from frozen source features, without training: LogME and LEEP.

Both are higher-is-better and comparable across backbones on the same target data.

- LogME (You et al., ICML 2021): the log marginal likelihood ("evidence") of a Bayesian
  linear model from the features to each class's one-hot target, maximised over the prior
  precision alpha and the noise precision beta with MacKay's fixed-point updates, divided
  by the number of images and averaged over classes.
- LEEP (Nguyen et al., ICML 2020): how well the source classifier's predictions, mapped to
  target labels through their empirical joint distribution, predict the target labels
  (the mean log-likelihood; 0 is perfect, -log(classes) is chance).
"""

from __future__ import annotations

import numpy as np

MAX_ITERATIONS = 1000
TOLERANCE = 1e-10  # relative change of the evidence between fixed-point steps


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of `features` [N, D] for integer `labels` [N]."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(labels) or len(f) < 2:
        raise ValueError(f"expected features [N, D] and N labels with N >= 2, got {f.shape} and {labels.shape}")
    # One SVD serves every class: the evidence only needs the squared singular values and the
    # targets' projections onto the left singular vectors.
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    rank = int(np.sum(s > s.max(initial=0.0) * max(f.shape) * np.finfo(np.float64).eps))
    u, sigma = u[:, :rank], s[:rank] ** 2
    per_class = [_max_evidence(u, sigma, (labels == c).astype(np.float64)) for c in np.unique(labels)]
    return float(np.mean(per_class) / len(f))


def _max_evidence(u: np.ndarray, sigma: np.ndarray, y: np.ndarray) -> float:
    """max over alpha, beta of log p(y | F, alpha, beta), in the SVD basis of F."""
    n = len(y)
    x2 = (u.T @ y) ** 2  # target energy along each feature direction
    outside = max(float(y @ y - x2.sum()), 0.0)  # energy no feature direction can explain
    if not np.any(x2 > 0):  # the features explain nothing (e.g. all zero): alpha -> inf, noise only
        return 0.5 * n * (np.log(n / outside) - 1.0 - np.log(2 * np.pi))
    alpha, beta = 1.0, 1.0
    evidence = -np.inf
    for _ in range(MAX_ITERATIONS):
        shrink = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / shrink))  # effective number of well-determined weights
        m2 = float(np.sum(beta**2 * sigma * x2 / shrink**2))  # |m|^2, m the posterior mean weights
        residual = float(np.sum(alpha**2 * x2 / shrink**2)) + outside  # |F m - y|^2
        new = _evidence(alpha, beta, sigma, m2, residual, n)
        if not np.isfinite(new):
            break
        # When the features can fit y exactly (D >= N), beta grows without bound while the
        # evidence converges to its supremum; so stop on the evidence, not on alpha and beta.
        converged = abs(new - evidence) <= TOLERANCE * max(1.0, abs(new))
        evidence = new
        if converged or residual <= 0.0 or m2 <= 0.0:
            break
        alpha, beta = gamma / m2, (n - gamma) / residual
    return evidence


def _evidence(alpha: float, beta: float, sigma: np.ndarray, m2: float, residual: float, n: int) -> float:
    # D/2 log(alpha) - 1/2 log|alpha I + beta F^T F| = rank/2 log(alpha) - 1/2 sum(log(alpha + beta sigma)):
    # the D - rank zero eigenvalues cancel.
    return float(
        0.5 * len(sigma) * np.log(alpha)
        + 0.5 * n * np.log(beta)
        - 0.5 * np.sum(np.log(alpha + beta * sigma))
        - 0.5 * beta * residual
        - 0.5 * alpha * m2
        - 0.5 * n * np.log(2 * np.pi)
    )


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of a source classifier's softmax outputs [N, Z] for integer target `labels` [N]."""
    p = np.asarray(source_probs, dtype=np.float64)
    labels = np.asarray(labels)
    if p.ndim != 2 or len(p) != len(labels) or len(p) == 0:
        raise ValueError(f"expected probabilities [N, Z] and N labels, got {p.shape} and {labels.shape}")
    _, y = np.unique(labels, return_inverse=True)
    joint = np.zeros((y.max() + 1, p.shape[1]))
    np.add.at(joint, y, p)  # joint[t, z] = sum of source probability z over images of target class t
    source_marginal = joint.sum(axis=0, keepdims=True)
    conditional = np.divide(joint, source_marginal, out=np.zeros_like(joint), where=source_marginal > 0)
    expected = np.sum(p * conditional[y], axis=1)  # P(true label) under the dummy source-to-target classifier
    return float(np.mean(np.log(np.maximum(expected, np.finfo(np.float64).tiny))))
