"""pyannote export: ONNX contract, parity gate, numpy embedding head, fixture size.

Serving environment: ``.envs/serve/bin/python -m pytest tests/test_export_diarization.py``. Tests marked
``export`` build (or reuse from the cache) the ``pyannote_small`` artifact with the export environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export_scripts import build
from export_scripts.common import EXPORT_PYTHON, REPO_ROOT, default_cache_root

FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "diarization"
FILES = (
    "segmentation.onnx",
    "embedding_trunk.onnx",
    "embedding_head.npz",
    "plda.npz",
    "xvec_transform.npz",
    "params.json",
    "fbank.json",
    "head_check.npz",
    "export_meta.json",
)


def test_fixture_files_fit_in_2mb():
    files = [p for p in FIXTURE_DIR.rglob("*") if p.is_file()] if FIXTURE_DIR.is_dir() else []
    assert sum(p.stat().st_size for p in files) <= 2 * 1024 * 1024


def test_artifacts_declared():
    arts = {a.name: a for a in build.ARTIFACTS}
    small = arts["pyannote_small"]
    assert small.models == ("segmentation", "speaker_embedding") and small.default
    assert "real" in small.sources
    assert arts["pyannote_full"].models == () and not arts["pyannote_full"].default
    for name in ("pyannote_small", "pyannote_full", "pyannote_fixture"):
        assert arts[name].files == FILES


@pytest.fixture(scope="module")
def small_dir():
    return build.artifact_dir("pyannote_small")


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def head(features, masks, weight, bias):
    """docs/diarization-export.md's formula, written independently of the exporter."""
    features = features.astype(np.float32)
    c, t = features.shape
    m = masks.shape[1]
    idx = np.minimum(np.floor(np.arange(t, dtype=np.float32) * np.float32(m / t)).astype(int), m - 1)
    out = []
    for mask in masks.astype(np.float32):
        w = mask[idx]
        v1 = w.sum() + np.float32(1e-8)
        mean = features @ w / v1
        v2 = (w * w).sum()
        var = ((features - mean[:, None]) ** 2 @ w) / (v1 - v2 / v1 + np.float32(1e-8))
        out.append(np.concatenate([mean, np.sqrt(var)]) @ weight.T + bias)
    return np.stack(out)


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.export
def test_onnx_contract(small_dir):
    for name in FILES:
        assert (small_dir / name).is_file(), name
    seg = _session(small_dir / "segmentation.onnx")
    (i,), (o,) = seg.get_inputs(), seg.get_outputs()
    assert (i.name, o.name) == ("waveform", "scores")
    assert isinstance(i.shape[0], str) and i.shape[1:] == [1, 160000]
    assert isinstance(o.shape[0], str) and o.shape[1:] == [589, 7]
    trunk = _session(small_dir / "embedding_trunk.onnx")
    (i,), (o,) = trunk.get_inputs(), trunk.get_outputs()
    assert (i.name, o.name) == ("fbank", "features")
    assert isinstance(i.shape[0], str) and i.shape[2] == 80
    assert isinstance(o.shape[0], str) and isinstance(o.shape[1], int)

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((3, 1, 160000))).astype(np.float32)
    batched = seg.run(None, {"waveform": x})[0]
    assert batched.shape == (3, 589, 7) and np.isfinite(batched).all()
    single = seg.run(None, {"waveform": x[1:2]})[0]
    np.testing.assert_allclose(batched[1:2], single, atol=1e-5)
    # log-softmax: probabilities sum to one
    np.testing.assert_allclose(np.exp(batched).sum(-1), 1.0, atol=1e-4)
    fb = rng.standard_normal((2, 998, 80)).astype(np.float32)
    feats = trunk.run(None, {"fbank": fb})[0]
    params = json.loads((small_dir / "params.json").read_text())
    assert feats.shape == (2, params["embedding"]["feature_channels"], params["embedding"]["feature_frames"])


@pytest.mark.export
def test_numpy_head_reproduces_recorded_check(small_dir):
    h = np.load(small_dir / "embedding_head.npz")
    rec = np.load(small_dir / "head_check.npz")
    got = head(rec["features"], rec["masks"], h["weight"], h["bias"])
    assert got.shape == rec["embeddings"].shape
    assert _cos(got, rec["embeddings"]).min() >= 0.99999
    # the stored nearest-index table is the formula's
    m, t = int(h["mask_frames"]), int(h["feature_frames"])
    idx = np.minimum(np.floor(np.arange(t, dtype=np.float32) * np.float32(m / t)).astype(int), m - 1)
    np.testing.assert_array_equal(h["mask_index"], idx)
    meta = json.loads((small_dir / "export_meta.json").read_text())
    assert meta["parity"]["segmentation_max_abs_diff"] <= 1e-5
    assert meta["parity"]["embedding_min_cosine"] >= 0.99999
    assert meta["parity"]["windows_with_active_speaker"] >= 3


@pytest.mark.export
def test_params_and_fbank(small_dir):
    p = json.loads((small_dir / "params.json").read_text())
    s = p["segmentation"]
    assert (s["duration"], s["step"], s["num_frames"], s["num_classes"]) == (10.0, 1.0, 589, 7)
    assert len(s["powerset_mapping"]) == 7 and s["powerset_mapping"][0] == [0, 0, 0]
    assert p["clustering"]["method"] == "VBxClustering"
    assert {"threshold", "Fa", "Fb"} <= set(p["clustering"])
    f = json.loads((small_dir / "fbank.json").read_text())
    assert (f["num_mel_bins"], f["frame_length_ms"], f["frame_shift_ms"]) == (80, 25.0, 10.0)
    assert f["waveform_scale"] == 32768.0 and f["dither"] == 0.0 and f["mean_centering"] == "global"
    plda = np.load(small_dir / "plda.npz")
    xt = np.load(small_dir / "xvec_transform.npz")
    assert set(plda.files) >= {"mu", "tr", "psi"} and set(xt.files) >= {"mean1", "mean2", "lda"}


@pytest.mark.export
def test_gate_refuses_impossible_tolerance(small_dir, tmp_path):
    art = next(a for a in build.ARTIFACTS if a.name == "pyannote_small")
    src = build.dev_source(art, (default_cache_root() / "models").expanduser().resolve())
    out = tmp_path / "never"
    proc = subprocess.run(
        [
            str(EXPORT_PYTHON),
            "-m",
            "export_scripts.pyannote_export",
            "--model-dir",
            str(src),
            "--out",
            str(out),
            "--min-cosine",
            "1.5",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "parity gate failed" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".never*"))


# -- agglomerative clustering: exporter -> params.json -> PipelineSettings --------------------------

# pyannote's AgglomerativeClustering hyper-parameters as speaker-diarization-3.1 tunes them
AHC_TUNED = {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799}


def test_clustering_params_keep_strings_and_numbers():
    from types import SimpleNamespace

    from export_scripts.pyannote_export import clustering_params

    pipeline = SimpleNamespace(_plda=SimpleNamespace(lda_dimension=128))
    p = clustering_params("AgglomerativeClustering", dict(AHC_TUNED), pipeline)
    assert p["method"] == "AgglomerativeClustering" and p["linkage_method"] == "centroid"
    assert p["threshold"] == AHC_TUNED["threshold"] and p["min_cluster_size"] == 12
    assert isinstance(p["min_cluster_size"], int) and "method='centroid'" in p["ahc"]
    p = clustering_params("VBxClustering", {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}, pipeline)
    assert (p["method"], p["threshold"], p["Fa"], p["Fb"]) == ("VBxClustering", 0.6, 0.07, 0.8)
    assert "linkage_method" not in p and p["plda_lda_dimension"] == 128


def _params_json(tmp_path: Path, clustering: dict) -> Path:
    (tmp_path / "params.json").write_text(json.dumps({"clustering": clustering}))
    return tmp_path


def _planted(sizes: tuple[int, ...], dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows with two active local speakers each (the third silent, NaN embedding) whose
    embeddings come from orthogonal clusters of the given sizes (in time order)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    num_windows = (len(labels) + 1) // 2
    labels = np.resize(labels, 2 * num_windows)
    binary = np.zeros((num_windows, 589, 3), np.uint8)
    binary[:, :250, 0] = 1
    binary[:, 300:550, 1] = 1
    emb = np.full((num_windows, 3, dim), np.nan, np.float32)
    centres = np.eye(dim)[: len(sizes)] * 10.0
    noise = rng.normal(scale=0.5, size=(2 * num_windows, dim))
    emb[:, :2] = (centres[labels] + noise).reshape(num_windows, 2, dim)
    return binary, emb


def test_pipeline_settings_route_agglomerative_params(tmp_path):
    """PipelineSettings reads an agglomerative params.json, and its threshold / linkage method /
    min_cluster_size decide the clustering; the other method (chosen per call) keeps its defaults."""
    from inference_client.diarization import PipelineSettings, assemble_diarization
    from speechlib.diarization.clustering import agglomerative_clustering

    clu = {"method": "AgglomerativeClustering", "linkage_method": "average", "threshold": 0.5}
    clu["min_cluster_size"] = 3
    ahc = PipelineSettings.from_dir(_params_json(tmp_path, clu))
    assert (ahc.clustering, ahc.threshold, ahc.ahc_method, ahc.min_cluster_size) == (
        "agglomerative",
        0.5,
        "average",
        3,
    )
    # two big speakers and a small one (5 embeddings): kept with min_cluster_size 3, merged with 12
    binary, emb = _planted((40, 40, 5))
    direct = agglomerative_clustering(emb, binary, threshold=0.5, method="average", min_cluster_size=3)
    assert direct.centroids.shape[0] == 3
    ours = assemble_diarization(binary, emb, ahc, 60.0)
    assert len(ours.speakers) == 3
    np.testing.assert_allclose(np.sort(ours.centroids, axis=0), np.sort(direct.centroids, axis=0), rtol=1e-6)
    # a VBx-configured pipeline asked for agglomerative per call: 3.1's defaults (min_cluster_size 12)
    vbx = PipelineSettings(threshold=0.3)
    assert len(assemble_diarization(binary, emb, vbx, 60.0, method="agglomerative").speakers) == 2
    with pytest.raises(ValueError, match="PLDA"):
        assemble_diarization(binary, emb, vbx, 60.0, method="vbx")
    with pytest.raises(ValueError, match="clustering must be one of"):
        assemble_diarization(binary, emb, ahc, 60.0, method="kmeans")


@pytest.fixture(scope="module")
def agglomerative_dir(small_dir, tmp_path_factory):
    """The pyannote_small dev model (weights linked, not copied) with config.yaml rewritten to pyannote's
    AgglomerativeClustering, exported by the exporter's command line."""
    import yaml

    art = next(a for a in build.ARTIFACTS if a.name == "pyannote_small")
    src = build.dev_source(art, (default_cache_root() / "models").expanduser().resolve())
    root = tmp_path_factory.mktemp("agglomerative")
    model = root / "model"
    model.mkdir()
    for name in ("segmentation", "embedding", "plda"):
        (model / name).symlink_to(src / name, target_is_directory=True)
    config = yaml.safe_load((src / "config.yaml").read_text())
    config["pipeline"]["params"]["clustering"] = "AgglomerativeClustering"
    config["params"]["clustering"] = dict(AHC_TUNED)
    (model / "config.yaml").write_text(yaml.safe_dump(config))
    out = root / "export"
    proc = subprocess.run(
        [
            str(EXPORT_PYTHON),
            "-m",
            "export_scripts.pyannote_export",
            "--model-dir",
            str(model),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.export
def test_export_agglomerative_config(agglomerative_dir, small_dir):
    from inference_client.diarization import PipelineSettings

    p = json.loads((agglomerative_dir / "params.json").read_text())
    clu = p["clustering"]
    assert clu["method"] == "AgglomerativeClustering" and clu["linkage_method"] == "centroid"
    assert clu["threshold"] == pytest.approx(AHC_TUNED["threshold"]) and clu["min_cluster_size"] == 12
    assert p["pyannote_audio_config_params"]["clustering"] == AHC_TUNED
    # the rest of params.json does not depend on the clustering
    vbx = json.loads((small_dir / "params.json").read_text())
    assert (p["segmentation"], p["embedding"]) == (vbx["segmentation"], vbx["embedding"])
    s = PipelineSettings.from_dir(agglomerative_dir)
    assert (s.clustering, s.ahc_method, s.min_cluster_size) == ("agglomerative", "centroid", 12)
    assert s.threshold == pytest.approx(AHC_TUNED["threshold"])
    assert s.plda is not None  # VBx stays available per call
    assert PipelineSettings.from_dir(small_dir).clustering == "vbx"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_synthetic_meeting_has_silence_overlap_and_known_turns(n):
    from tests.meetings import HELDOUT_SENTENCES, TRAIN_SENTENCES, speech_fraction, synthetic_meeting

    assert not set(HELDOUT_SENTENCES) & set(TRAIN_SENTENCES)
    path, turns = synthetic_meeting(n, 40.0, seed=n)
    assert path.is_file() and len({t[2] for t in turns}) == n
    assert speech_fraction(turns, 40.0) <= 0.9
    ordered = sorted(turns)
    assert any(b[0] < a[1] and a[2] != b[2] for a, b in zip(ordered[:-1], ordered[1:], strict=True))
    again, turns2 = synthetic_meeting(n, 40.0, seed=n)
    assert again == path and turns2 == turns
