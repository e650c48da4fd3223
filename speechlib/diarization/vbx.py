"""Variational Bayes HMM clustering of x-vectors (VBx; Landini et al., "Bayesian HMM clustering of
x-vector sequences (VBx) in speaker diarization", 2022), in the GMM form pyannote 4.0.7 uses (no HMM
transitions): speaker models with zero mean, diagonal across-class covariance ``phi`` and identity
within-class covariance, speaker priors re-estimated each iteration.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax


def vbx(
    features: np.ndarray,
    phi: np.ndarray,
    gamma: np.ndarray,
    Fa: float = 1.0,
    Fb: float = 1.0,
    pi: np.ndarray | None = None,
    max_iters: int = 10,
    epsilon: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Run VBx from initial responsibilities.

    features: (T, D) PLDA features; phi: (D,) across-class variances; gamma: (T, S) initial
    responsibilities; pi: (S,) initial priors (default uniform). Fa scales the sufficient statistics,
    Fb regularises speakers (larger → fewer speakers). Stops after ``max_iters`` iterations or when the
    ELBO improves by less than ``epsilon``. Returns (gamma (T, S), pi (S,), ELBO per iteration).
    """
    X = np.asarray(features, dtype=np.float64)
    num_speakers = gamma.shape[1]
    if pi is None:
        pi = np.ones(num_speakers) / num_speakers
    dim = X.shape[1]
    # per-frame constant of the log-likelihood
    G = -0.5 * (np.sum(X**2, axis=1, keepdims=True) + dim * np.log(2 * np.pi))
    V = np.sqrt(phi)
    rho = X * V
    elbos: list[float] = []
    for it in range(max_iters):
        # posterior of each speaker model: precision-scaled diagonal covariance and mean
        inv_l = 1.0 / (1 + Fa / Fb * gamma.sum(axis=0, keepdims=True).T * phi)
        alpha = Fa / Fb * inv_l * gamma.T.dot(rho)
        log_p = Fa * (rho.dot(alpha.T) - 0.5 * (inv_l + alpha**2).dot(phi) + G)
        log_pi = np.log(pi + 1e-8)
        log_px = logsumexp(log_p + log_pi, axis=-1)
        total = np.sum(log_px, axis=0)
        gamma = np.exp(log_p + log_pi - log_px[:, None])
        pi = np.sum(gamma, axis=0)
        pi = pi / pi.sum()
        elbo = total + Fb * 0.5 * np.sum(np.log(inv_l) - inv_l - alpha**2 + 1)
        elbos.append(float(elbo))
        if it > 0 and elbo - elbos[-2] < epsilon:
            break
    return gamma, pi, elbos


def cluster_vbx(
    ahc_labels: np.ndarray,
    features: np.ndarray,
    phi: np.ndarray,
    Fa: float,
    Fb: float,
    max_iters: int = 20,
    init_smoothing: float = 7.0,
) -> tuple[np.ndarray, np.ndarray]:
    """VBx initialised from hard AHC labels (T,) (0..S-1): one-hot responsibilities smoothed by a
    softmax with temperature 1/init_smoothing (none if init_smoothing < 0). Returns (gamma (T, S), pi (S,))."""
    labels = np.asarray(ahc_labels).astype(int)
    q = np.zeros((len(labels), labels.max() + 1))
    q[np.arange(len(labels)), labels] = 1.0
    if init_smoothing >= 0:
        q = softmax(q * init_smoothing, axis=1)
    gamma, pi, _ = vbx(features, phi, q, Fa=Fa, Fb=Fb, max_iters=max_iters)
    return gamma, pi
