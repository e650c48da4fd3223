"""Global clustering of (window, local speaker) embeddings — community-1's VBx clustering (and
pyannote's agglomerative clustering as an option), with a memory-bounded mode for long audio.

Inputs everywhere:
* ``embeddings``: (num_windows, num_local_speakers, dim) array (float32 as the model gives them);
  NaN rows for speakers whose embedding was skipped (inactive in that window).
* ``binary_segmentations``: (num_windows, num_frames, num_local_speakers) 0/1 hard segmentation.
Outputs ``hard_clusters`` (num_windows, num_local_speakers) int: global cluster index, or -2 for a
local speaker the constrained assignment left without a cluster.

Exact mode (number of training embeddings ≤ ``max_embeddings``) reproduces pyannote 4.0.7's
``VBxClustering`` / ``AgglomerativeClustering`` decisions. Above the cap only the agglomerative step
(memory quadratic in its input) is bounded: a deterministic time-stratified subsample of
``max_embeddings`` training embeddings are seeds, every training embedding joins its nearest seed,
and the AHC runs on the seeds' cells weighted by their sizes (:func:`ahc_labels_extended`); VBx
(memory linear in its input) then runs on all training embeddings from those clusters. The
agglomerative option keeps the simpler form (AHC on the subsample). Every embedding is then assigned
to the resulting centroids in blocks of windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from speechlib.diarization.plda import PLDA

DEFAULT_MAX_EMBEDDINGS = 8000
# community-1's tuned VBx hyper-parameters
VBX_THRESHOLD = 0.6
VBX_FA = 0.07
VBX_FB = 0.8
# speaker-diarization-3.1's agglomerative hyper-parameters (the option)
AHC_THRESHOLD = 0.7045654963945799
AHC_METHOD = "centroid"
AHC_MIN_CLUSTER_SIZE = 12


@dataclass
class ClusteringResult:
    hard_clusters: np.ndarray  # (num_windows, num_local_speakers) int64, -2 = unassigned
    centroids: np.ndarray  # (num_clusters, dim) float64, row k = cluster k
    num_train: int  # training embeddings (active enough, not NaN)
    num_clustered: int  # embeddings the agglomerative step ran on (== num_train unless subsampled)

    @property
    def subsampled(self) -> bool:
        return self.num_clustered < self.num_train


def set_num_speakers(
    num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None
) -> tuple[int | None, int, float]:
    """Validate speaker-count constraints as the pipeline does: returns (num, min, max) where
    ``min`` defaults to 1 and ``max`` to ``inf``; ``num`` overrides both; min == max fixes ``num``."""
    min_speakers = num_speakers or min_speakers or 1
    max_speakers = num_speakers or max_speakers or np.inf
    if min_speakers > max_speakers:
        raise ValueError(
            f"min_speakers must be smaller than (or equal to) max_speakers "
            f"(here: min_speakers={min_speakers:g} and max_speakers={max_speakers:g})."
        )
    if min_speakers == max_speakers:
        num_speakers = min_speakers
    return num_speakers, min_speakers, max_speakers


def filter_embeddings(
    embeddings: np.ndarray, binary_segmentations: np.ndarray, min_active_ratio: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """(window index, local speaker index) of the embeddings clustering trains on: not NaN, and
    speaking alone in at least ``min_active_ratio`` of the window's frames. Sorted by window (time)."""
    seg = np.asarray(binary_segmentations)
    num_frames = seg.shape[1]
    single = np.sum(seg, axis=2, keepdims=True) == 1
    clean_frames = np.sum(seg * single, axis=1)
    active = clean_frames >= min_active_ratio * num_frames
    valid = ~np.any(np.isnan(embeddings), axis=2)
    return np.where(active * valid)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    """(1, dim) mean of the rows (NaN when there are none, as pyannote's)."""
    if x.shape[0] == 0:
        return np.full((1, x.shape[1]), np.nan)
    return np.mean(x, axis=0, keepdims=True)


def stratified_subsample(num: int, cap: int) -> np.ndarray:
    """Indices of ``cap`` items spread evenly over ``num`` time-ordered items (deterministic):
    item i of the subsample is the middle of the i-th of ``cap`` equal strata."""
    if num <= cap:
        return np.arange(num)
    return ((np.arange(cap, dtype=np.float64) + 0.5) * num / cap).astype(np.int64)


def _constrained_argmax(soft: np.ndarray) -> np.ndarray:
    soft = np.nan_to_num(soft, nan=np.nanmin(soft))
    num_chunks, num_speakers, _ = soft.shape
    hard = np.full((num_chunks, num_speakers), -2, dtype=np.int64)
    for c in range(num_chunks):
        rows, cols = linear_sum_assignment(soft[c], maximize=True)
        hard[c, rows] = cols
    return hard


def assign_to_centroids(
    embeddings: np.ndarray,
    centroids: np.ndarray,
    inactive: np.ndarray | None = None,
    constrained: bool = True,
    metric: str = "cosine",
    block_windows: int = 4096,
) -> np.ndarray:
    """Assign each (window, local speaker) embedding to the most similar centroid.

    Similarity = 2 − distance (``metric``, cosine as pyannote). Constrained (VBx default): per window, a
    Hungarian assignment so that two local speakers never share a cluster; ``inactive`` (num_windows,
    num_local_speakers) speakers are given a score below every real one (pyannote: global min − 1) and
    other NaN scores the global minimum; speakers left over get -2. Unconstrained: plain argmax (NaN
    rows → 0). Distances are computed ``block_windows`` windows at a time; only the
    (num_windows, num_local_speakers, num_clusters) score array is held (small).
    Returns (num_windows, num_local_speakers) int64.
    """
    num_chunks, num_speakers, dim = embeddings.shape
    num_clusters = centroids.shape[0]
    soft = np.empty((num_chunks, num_speakers, num_clusters), dtype=np.float64)
    for b in range(0, num_chunks, block_windows):
        block = embeddings[b : b + block_windows]
        d = cdist(block.reshape(-1, dim), centroids, metric=metric)
        soft[b : b + block_windows] = (2 - d).reshape(block.shape[0], num_speakers, num_clusters)
    if not constrained:
        return np.argmax(soft, axis=2).astype(np.int64)
    if inactive is not None:
        if np.all(np.isnan(soft)):
            const = -1.0
        else:
            # pyannote: soft.min() - 1 over (finite) scores, inactive speakers included; ours are NaN
            const = np.nanmin(soft) - 1.0
        soft[inactive] = const
    return _constrained_argmax(soft)


def weighted_centroid_linkage(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Centroid-linkage dendrogram (scipy's ``Z`` format) of ``points`` that stand for ``weights``
    observations each: a merged cluster's centroid is the weighted mean of its parts, the distance
    between clusters the euclidean distance between centroids. With unit weights this is scipy's
    ``linkage(points, "centroid")`` up to rounding and tie order. Holds an m × m float32 distance
    matrix (what scipy's condensed float64 matrix takes) and each cluster's nearest neighbour."""
    x = np.array(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).copy()
    m = x.shape[0]
    Z = np.zeros((max(m - 1, 0), 4))
    D = np.empty((m, m), np.float32)
    for b in range(0, m, 1024):
        D[b : b + 1024] = cdist(x[b : b + 1024], x)
    np.fill_diagonal(D, np.inf)
    active = np.ones(m, bool)
    node = np.arange(m)  # scipy node id of the cluster held in each row
    size = np.ones(m)  # observations (rows of the original input) below each row's node
    nn = D.argmin(axis=1)
    nd = D[np.arange(m), nn]
    for step in range(m - 1):
        a = int(np.argmin(nd))
        b = int(nn[a])
        Z[step] = (min(node[a], node[b]), max(node[a], node[b]), nd[a], size[a] + size[b])
        x[a] = (w[a] * x[a] + w[b] * x[b]) / (w[a] + w[b])
        w[a] += w[b]
        size[a] += size[b]
        node[a] = m + step
        active[b] = False
        D[b, :] = D[:, b] = nd[b] = np.inf
        if step == m - 2:
            break
        da = np.where(active, np.linalg.norm(x - x[a], axis=1), np.inf).astype(np.float32)
        da[a] = np.inf
        D[a, :] = D[:, a] = da
        # a moved and b is gone: clusters that pointed at either look again; others may now prefer a
        stale = np.flatnonzero(active & ((nn == a) | (nn == b)))
        stale = np.union1d(stale, [a])
        nn[stale] = D[stale].argmin(axis=1)
        nd[stale] = D[stale, nn[stale]]
        closer = active & (da < nd)
        nn[closer], nd[closer] = a, da[closer]
    return Z


def ahc_labels_extended(
    normed: np.ndarray, subset: np.ndarray | None, threshold: float, block: int = 4096
) -> np.ndarray:
    """VBx's initial clusters: centroid-linkage AHC on unit-normalised embeddings cut at ``threshold``
    -> 0-based labels (N,). AHC needs memory quadratic in its input, so with ``subset`` (indices of
    seeds) every row first joins its nearest seed (euclidean, ``block`` rows at a time), and the AHC
    runs on the seeds' cells: their centroids, weighted by the rows they hold
    (:func:`weighted_centroid_linkage`) — the full AHC with its first, smallest merges taken as given."""
    if subset is None or len(subset) >= normed.shape[0]:
        dendrogram = linkage(normed, method="centroid", metric="euclidean")
        labels = fcluster(dendrogram, threshold, criterion="distance") - 1
        return np.unique(labels, return_inverse=True)[1]
    if len(subset) < 2:  # one seed: one cluster (a linkage needs two points)
        return np.zeros(normed.shape[0], np.int64)
    seeds = normed[subset]
    cell = np.empty(normed.shape[0], np.int64)
    for b in range(0, normed.shape[0], block):
        cell[b : b + block] = cdist(normed[b : b + block], seeds).argmin(axis=1)
    cell[subset] = np.arange(len(subset))
    counts = np.bincount(cell, minlength=len(subset)).astype(np.float64)
    centroids = np.zeros_like(seeds, dtype=np.float64)
    np.add.at(centroids, cell, normed)
    centroids /= counts[:, None]
    dendrogram = weighted_centroid_linkage(centroids, counts)
    labels = fcluster(dendrogram, threshold, criterion="distance") - 1
    return np.unique(labels[cell], return_inverse=True)[1]


def _vbx_centroids(
    train: np.ndarray,
    subset: np.ndarray | None,
    plda: PLDA,
    threshold: float,
    Fa: float,
    Fb: float,
    num_clusters: int | None,
    min_clusters: float,
    max_clusters: float,
) -> tuple[np.ndarray, bool]:
    """AHC (:func:`ahc_labels_extended`; on ``subset`` only when given) → VBx on the PLDA features of
    all ``train`` rows → centroids = responsibility-weighted means of the speakers VBx kept; KMeans
    (k-means++, 3 inits, seed 42, on unit-normalised embeddings) when the count violates num/min/max.
    Returns (centroids, forced) where forced means KMeans re-clustered."""
    from speechlib.diarization.vbx import cluster_vbx

    normed = train / np.linalg.norm(train, axis=1, keepdims=True)
    ahc = ahc_labels_extended(normed, subset, threshold)
    features = plda(train)
    q, sp = cluster_vbx(ahc, features, plda.phi, Fa=Fa, Fb=Fb, max_iters=20)
    weights = q[:, sp > 1e-7]
    centroids = weights.T @ train / weights.sum(0, keepdims=True).T
    auto = centroids.shape[0]
    if auto < min_clusters:
        num_clusters = min_clusters
    elif auto > max_clusters:
        num_clusters = max_clusters
    if num_clusters and num_clusters != auto:
        # pyannote would fail inside KMeans when asked for more clusters than embeddings
        k = int(min(num_clusters, train.shape[0]))
        labels = KMeans(n_clusters=k, n_init=3, random_state=42, copy_x=False).fit_predict(normed)
        centroids = np.vstack([np.mean(train[labels == i], axis=0) for i in range(k)])
        return centroids, True
    return centroids, False


def vbx_clustering(
    embeddings: np.ndarray,
    binary_segmentations: np.ndarray,
    plda: PLDA,
    threshold: float = VBX_THRESHOLD,
    Fa: float = VBX_FA,
    Fb: float = VBX_FB,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    constrained_assignment: bool = True,
    max_embeddings: int | None = DEFAULT_MAX_EMBEDDINGS,
    block_windows: int = 4096,
) -> ClusteringResult:
    """community-1's clustering (``VBxClustering``) honouring num/min/max speakers as the pipeline
    passes them. See the module docstring for shapes; ``max_embeddings=None`` disables the cap."""
    num_speakers, min_speakers, max_speakers = set_num_speakers(num_speakers, min_speakers, max_speakers)
    chunk_idx, speaker_idx = filter_embeddings(embeddings, binary_segmentations)
    train = embeddings[chunk_idx, speaker_idx]
    num_chunks, num_local, _ = embeddings.shape
    n = train.shape[0]
    if n < 2:
        centroids = _mean_rows(train)
        return ClusteringResult(np.zeros((num_chunks, num_local), dtype=np.int64), centroids, n, n)
    subset = stratified_subsample(n, max_embeddings) if max_embeddings and n > max_embeddings else None
    centroids, forced = _vbx_centroids(
        train, subset, plda, threshold, Fa, Fb, num_speakers, min_speakers, max_speakers
    )
    seg = np.asarray(binary_segmentations)
    inactive = np.sum(seg, axis=1) == 0
    hard = assign_to_centroids(
        embeddings,
        centroids,
        inactive=inactive,
        constrained=constrained_assignment and not forced,
        block_windows=block_windows,
    )
    return ClusteringResult(hard, centroids, n, n if subset is None else len(subset))


def _ahc_labels(
    train: np.ndarray,
    threshold: float,
    method: str,
    min_cluster_size: int,
    metric: str,
    num_clusters: int | None,
    min_clusters: int,
    max_clusters: int,
) -> np.ndarray:
    """pyannote's AgglomerativeClustering.cluster: cut the dendrogram at ``threshold``, search the
    cut closest to the requested number of large clusters, merge small clusters into the nearest
    large one. Returns 0-based labels (N,)."""
    n = train.shape[0]
    min_cluster_size = min(min_cluster_size, max(1, round(0.1 * n)))
    if n == 1:
        return np.zeros((1,), dtype=np.int64)
    x = train
    if metric == "cosine" and method in ("centroid", "median", "ward"):
        with np.errstate(divide="ignore", invalid="ignore"):
            x = train / np.linalg.norm(train, axis=-1, keepdims=True)
        dendrogram = linkage(x, method=method, metric="euclidean")
    else:
        dendrogram = linkage(x, method=method, metric=metric)
    clusters = fcluster(dendrogram, threshold, criterion="distance") - 1
    uniq, counts = np.unique(clusters, return_counts=True)
    large = uniq[counts >= min_cluster_size]
    num_large = len(large)
    if num_large < min_clusters:
        num_clusters = min_clusters
    elif num_large > max_clusters:
        num_clusters = max_clusters
    if num_clusters is not None and num_large != num_clusters:
        by_iteration = np.copy(dendrogram)
        by_iteration[:, 2] = np.arange(n - 1)
        best_iteration, best_num_large = n - 1, 1
        for iteration in np.argsort(np.abs(dendrogram[:, 2] - threshold)):
            if by_iteration[iteration, 3] < min_cluster_size:
                continue
            clusters = fcluster(by_iteration, iteration, criterion="distance") - 1
            uniq, counts = np.unique(clusters, return_counts=True)
            large = uniq[counts >= min_cluster_size]
            num_large = len(large)
            if abs(num_large - num_clusters) < abs(best_num_large - num_clusters):
                best_iteration, best_num_large = iteration, num_large
            if num_large == num_clusters:
                break
        if best_num_large != num_clusters:
            clusters = fcluster(by_iteration, best_iteration, criterion="distance") - 1
            uniq, counts = np.unique(clusters, return_counts=True)
            large = uniq[counts >= min_cluster_size]
            num_large = len(large)
    if num_large == 0:
        clusters[:] = 0
        return clusters
    small = uniq[counts < min_cluster_size]
    if len(small) == 0:
        return clusters
    large_centroids = np.vstack([np.mean(x[clusters == k], axis=0) for k in large])
    small_centroids = np.vstack([np.mean(x[clusters == k], axis=0) for k in small])
    nearest = np.argmin(cdist(large_centroids, small_centroids, metric=metric), axis=0)
    for s, target in enumerate(nearest):
        clusters[clusters == small[s]] = large[target]
    _, clusters = np.unique(clusters, return_inverse=True)
    return clusters


def agglomerative_clustering(
    embeddings: np.ndarray,
    binary_segmentations: np.ndarray,
    threshold: float = AHC_THRESHOLD,
    method: str = AHC_METHOD,
    min_cluster_size: int = AHC_MIN_CLUSTER_SIZE,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    metric: str = "cosine",
    constrained_assignment: bool = False,
    max_embeddings: int | None = DEFAULT_MAX_EMBEDDINGS,
    block_windows: int = 4096,
) -> ClusteringResult:
    """pyannote's ``AgglomerativeClustering`` (the option; 3.1's tuned defaults), same shapes as
    :func:`vbx_clustering`."""
    num_speakers, min_speakers, max_speakers = set_num_speakers(num_speakers, min_speakers, max_speakers)
    chunk_idx, speaker_idx = filter_embeddings(embeddings, binary_segmentations)
    train = embeddings[chunk_idx, speaker_idx]
    num_chunks, num_local, _ = embeddings.shape
    n = train.shape[0]
    # BaseClustering.set_num_clusters
    min_c = num_speakers or min_speakers or 1
    min_c = max(1, min(n, min_c))
    max_c = num_speakers or max_speakers or n
    max_c = max(1, min(n, max_c))
    num_c = min_c if min_c == max_c else num_speakers
    if max_c < 2:
        centroids = _mean_rows(train)
        return ClusteringResult(np.zeros((num_chunks, num_local), dtype=np.int64), centroids, n, n)
    subset = stratified_subsample(n, max_embeddings) if max_embeddings else np.arange(n)
    sub = train[subset]
    labels = _ahc_labels(sub, threshold, method, min_cluster_size, metric, num_c, min_c, max_c)
    k = int(np.max(labels)) + 1
    centroids = np.vstack([np.mean(sub[labels == i], axis=0) for i in range(k)])
    seg = np.asarray(binary_segmentations)
    hard = assign_to_centroids(
        embeddings,
        centroids,
        inactive=np.sum(seg, axis=1) == 0,
        constrained=constrained_assignment,
        metric=metric,
        block_windows=block_windows,
    )
    return ClusteringResult(hard, centroids, n, len(subset))
