"""PLDA transform of speaker embeddings (community-1's ``plda/xvec_transform.npz`` + ``plda/plda.npz``).

Embeddings (256-d WeSpeaker x-vectors) go through: centring on ``mean1``, length normalisation scaled
by sqrt(input dim), LDA projection, centring on ``mean2``, length normalisation scaled by sqrt(LDA dim);
then into the PLDA latent space, where the within-class covariance is the identity and the
between-class covariance is diagonal (``phi``), keeping the first ``lda_dimension`` (128) dimensions.
The latent basis comes from the generalised eigenproblem B v = λ W v of the PLDA's between (B) and
within (W) class covariances, eigenvalues in decreasing order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.linalg import eigh


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, ord=2)[:, np.newaxis]


@dataclass
class PLDA:
    """PLDA parameters. ``mean1`` (D,), ``mean2`` (L,), ``lda`` (D, L) from xvec_transform.npz;
    ``mu`` (L,), ``tr`` (L, L), ``psi`` (L,) from plda.npz."""

    mean1: np.ndarray
    mean2: np.ndarray
    lda: np.ndarray
    mu: np.ndarray
    tr: np.ndarray
    psi: np.ndarray
    lda_dimension: int = 128

    def __post_init__(self):
        tr, psi = np.asarray(self.tr, dtype=np.float64), np.asarray(self.psi, dtype=np.float64)
        within = np.linalg.inv(tr.T.dot(tr))
        between = np.linalg.inv((tr.T / psi).dot(tr))
        eigval, eigvec = eigh(between, within)
        self._psi = eigval[::-1]
        self._basis = eigvec.T[::-1]

    @classmethod
    def from_npz(cls, transform_npz: str | Path, plda_npz: str | Path, lda_dimension: int = 128) -> PLDA:
        x = np.load(transform_npz)
        p = np.load(plda_npz)
        return cls(
            mean1=x["mean1"],
            mean2=x["mean2"],
            lda=x["lda"],
            mu=p["mu"],
            tr=p["tr"],
            psi=p["psi"],
            lda_dimension=lda_dimension,
        )

    @classmethod
    def from_dir(cls, directory: str | Path, lda_dimension: int = 128) -> PLDA:
        """Load ``xvec_transform.npz`` and ``plda.npz`` from ``directory``."""
        d = Path(directory)
        return cls.from_npz(d / "xvec_transform.npz", d / "plda.npz", lda_dimension=lda_dimension)

    @property
    def phi(self) -> np.ndarray:
        """Between-class variances in the PLDA space, (lda_dimension,), decreasing."""
        return self._psi[: self.lda_dimension]

    def xvec_transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Centring, whitening/LDA and length normalisation: (N, D) → (N, L)."""
        lda = self.lda
        x = np.sqrt(lda.shape[0]) * _unit_rows(np.asarray(embeddings) - self.mean1)
        return np.sqrt(lda.shape[1]) * _unit_rows(lda.T.dot(x.T).T - self.mean2)

    def plda_transform(self, x: np.ndarray) -> np.ndarray:
        """Map xvec-transformed vectors (N, L) into the PLDA latent space (N, lda_dimension)."""
        return (x - self.mu).dot(self._basis.T)[:, : self.lda_dimension]

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) raw embeddings → (N, lda_dimension) PLDA features (what VBx clusters)."""
        return self.plda_transform(self.xvec_transform(embeddings))
