"""SenseVoiceSmall export: dev models, ONNX interface, tokens, parity gate, fixture, FunASR reference.

Run with the serving environment: ``.envs/serve/bin/python -m pytest tests/test_export_asr.py``.
Tests marked ``export`` need the export environment (``.envs/export``): they build the cached dev
artifacts on a miss (``export_scripts.build.artifact_dir``) and call FunASR through subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from export_scripts import build, download
from export_scripts.common import EXPORT_PYTHON, REPO_ROOT, default_cache_root

BPE = "chn_jpn_yue_eng_ko_spectok.bpe.model"
FILES = ("model.onnx", "am.mvn", "config.yaml", BPE, "tokens.json", "export_meta.json")
INPUTS = ["speech", "speech_lengths", "language", "textnorm"]
OUTPUTS = ["ctc_logits", "encoder_out_lens"]
SPECIALS = {
    0: "<unk>",
    24884: "<|zh|>",
    24885: "<|en|>",
    24888: "<|yue|>",
    24892: "<|ja|>",
    24896: "<|ko|>",
    24992: "<|nospeech|>",
    24993: "<|Speech|>",
    24994: "<|BGM|>",
    25001: "<|HAPPY|>",
    25002: "<|SAD|>",
    25003: "<|ANGRY|>",
    25004: "<|NEUTRAL|>",
    25009: "<|EMO_UNKNOWN|>",
    25016: "<|withitn|>",
    25017: "<|woitn|>",
}

pytestmark = pytest.mark.export


def run_py(args, python=EXPORT_PYTHON, timeout=600):
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(python), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    return proc, time.monotonic() - t0


def _art(name: str) -> build.Artifact:
    return next(a for a in build.ARTIFACTS if a.name == name)


@pytest.fixture(scope="module")
def tiny() -> Path:
    return build.artifact_dir("sensevoice_tiny")


@pytest.fixture(scope="module")
def fixture() -> Path:
    return build.artifact_dir("sensevoice_fixture")


def _cache() -> Path:
    return (default_cache_root() / "models").expanduser().resolve()


# -- build table -----------------------------------------------------------------------------------


def test_artifacts_and_download_entry():
    names = {a.name: a for a in build.ARTIFACTS}
    assert names["sensevoice_tiny"].models == () and names["sensevoice_tiny"].default
    assert names["sensevoice_fixture"].models == ("asr",) and names["sensevoice_fixture"].default
    assert "fixture_clips.npz" in names["sensevoice_fixture"].files
    assert names["sensevoice_full"].default is False
    assert "real" in names["sensevoice"].sources and names["sensevoice"].models == ("asr",)
    for a in ("sensevoice_tiny", "sensevoice_fixture", "sensevoice_full", "sensevoice"):
        assert set(FILES) <= set(names[a].files)
    m = next(m for m in download.MODELS if m.key == "sensevoice-small")
    assert m.folder == "SenseVoiceSmall" and m.modelscope_id == "iic/SenseVoiceSmall"
    assert m.huggingface_id == "FunAudioLLM/SenseVoiceSmall" and BPE in m.required


# -- tiny export -----------------------------------------------------------------------------------


def test_tiny_folder_tokens_and_config(tiny):
    import sentencepiece as spm
    import yaml

    for name in FILES:
        assert (tiny / name).is_file(), name
    tokens = json.loads((tiny / "tokens.json").read_text(encoding="utf-8"))
    assert len(tokens) == 25055
    for i, piece in SPECIALS.items():
        assert tokens[i] == piece, (i, tokens[i])
    sp = spm.SentencePieceProcessor(model_file=str(tiny / BPE))
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == tokens
    # tags are single pieces when text is encoded (FunASR's timestamp code relies on it)
    assert sp.encode("<|en|><|NEUTRAL|><|Speech|><|woitn|>", out_type=str) == [
        "<|en|>",
        "<|NEUTRAL|>",
        "<|Speech|>",
        "<|woitn|>",
    ]
    config = yaml.safe_load((tiny / "config.yaml").read_text())
    assert config["frontend_conf"]["dither"] == 0.0
    assert config["frontend_conf"]["lfr_m"] == 7 and config["frontend_conf"]["lfr_n"] == 6
    assert config["model"] == "SenseVoiceSmall" and config["encoder"] == "SenseVoiceEncoderSmall"
    meta = json.loads((tiny / "export_meta.json").read_text())
    assert meta["parity"]["max_abs_diff"] <= 1e-4 and meta["parity"]["argmax_agreement"] == 1.0
    assert len(meta["parity"]["checks"]) == 3
    assert meta["vocab_size"] == 25055 and set(meta["source_files_sha256"]) >= {"model.pt", BPE}


def test_tiny_onnx_interface_and_batching(tiny):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tiny / "model.onnx"), providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    assert [i.name for i in ins] == INPUTS and [o.name for o in outs] == OUTPUTS
    for t in ins + outs:
        assert isinstance(t.shape[0], str), f"{t.name}: batch axis {t.shape[0]!r} is not symbolic"
    assert ins[0].type == "tensor(float)" and ins[0].shape[2] == 560 and isinstance(ins[0].shape[1], str)
    assert all(i.type == "tensor(int32)" for i in ins[1:])
    assert outs[0].shape[2] == 25055

    rng = np.random.default_rng(0)
    lengths = np.array([40, 25], np.int32)
    x = rng.standard_normal((2, 40, 560)).astype(np.float32)
    x[1, 25:] = 0
    feed = {
        "speech": x,
        "speech_lengths": lengths,
        "language": np.array([0, 4], np.int32),
        "textnorm": np.array([15, 14], np.int32),
    }
    logits, olens = sess.run(OUTPUTS, feed)
    assert logits.shape == (2, 44, 25055) and olens.tolist() == [44, 29]
    one = sess.run(OUTPUTS, {k: v[1:2] for k, v in feed.items()} | {"speech": x[1:2, :25]})
    np.testing.assert_allclose(one[0][0], logits[1, :29], atol=1e-4)
    # the raised blank bias: blank wins on some frames, not all
    blank_frac = float(np.mean(logits[0, 4:].argmax(-1) == 0))
    assert 0.0 < blank_frac < 1.0


def test_parity_gate_refuses_impossible_tolerance(tmp_path):
    source = build.dev_source(_art("sensevoice_tiny"), _cache())
    out = tmp_path / "out"
    args = [
        "-m",
        "export_scripts.sensevoice",
        "--model-dir",
        str(source),
        "--out",
        str(out),
        "--tolerance",
        "0",
    ]
    proc, _ = run_py(args)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert "parity gate failed" in proc.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging leftovers


# -- fixture ---------------------------------------------------------------------------------------


def _fixture_clips(folder: Path):
    z = np.load(folder / "fixture_clips.npz")
    meta = json.loads(str(z["meta"]))
    return z, meta


def test_fixture_clips(fixture):
    for name in FILES + ("fixture_clips.npz",):
        assert (fixture / name).is_file(), name
    tokens = json.loads((fixture / "tokens.json").read_text(encoding="utf-8"))
    z, meta = _fixture_clips(fixture)
    assert int(z["sample_rate"]) == 16000
    assert 6 <= len(meta) <= 12
    assert {"en", "zh"} <= {c["language"] for c in meta}
    assert {True, False} == {c["with_itn"] for c in meta}
    for c in meta:
        audio = z[c["key"]]
        assert audio.dtype == np.float32 and audio.ndim == 1 and 0.3 * 16000 < len(audio) < 10 * 16000
        tags = [tokens[i] for i in c["token_ids"][:4]]
        itn = "<|withitn|>" if c["with_itn"] else "<|woitn|>"
        assert tags == [f"<|{c['language']}|>", f"<|{c['emotion']}|>", f"<|{c['event']}|>", itn]
        assert c["raw_text"].startswith("".join(tags))
        assert c["raw_text"][len("".join(tags)) :].strip() == c["text"]
    meta_json = json.loads((fixture / "export_meta.json").read_text())
    dev = meta_json["dev_model"]
    assert dev["variant"] == "fixture" and dev["training"]["exact"] and dev["verified_with_funasr_generate"]


def test_funasr_reference_on_fixture(fixture, tmp_path):
    """FunASR's own PyTorch inference on the fixture's weights gives exactly the trained outputs."""
    source = build.dev_source(_art("sensevoice_fixture"), _cache())
    out = tmp_path / "ref.json"
    z, meta = _fixture_clips(fixture)
    wav = tmp_path / "clip0.wav"
    import soundfile as sf

    sf.write(str(wav), z[meta[0]["key"]], 16000, subtype="FLOAT")
    args = [
        "-m",
        "export_scripts.reference_asr",
        "--model-dir",
        str(source),
        "--out",
        str(out),
        "--language",
        meta[0]["language"],
        "--use-itn",
        str(int(meta[0]["with_itn"])),
        "--fixture-npz",
        str(fixture / "fixture_clips.npz"),
        str(wav),
    ]
    proc, _ = run_py(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == ""  # FunASR's chatter goes to stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["settings"]["dither"] == 0.0
    files = result["files"]
    assert files[str(wav)]["token_ids"] == meta[0]["token_ids"]
    for c in meta:
        r = files[f"fixture:{c['key']}"]
        assert r["token_ids"] == c["token_ids"], c["text"]
        assert r["text"] == c["raw_text"]
        assert r["timestamp_error"] is None
        ts = r["token_timestamps"]
        assert len(ts) == len(c["token_ids"]) - 4
        duration_ms = len(z[c["key"]]) / 16
        for (piece, start, end), (_, next_start, _) in zip(ts, ts[1:] + [[None, 1e9, None]], strict=True):
            assert isinstance(piece, str) and 0 <= start <= end <= duration_ms + 60
            assert start <= next_start
        assert len(r["timestamp"]) == len(r["words"])


def test_fixture_installed_by_make_models_layout():
    """`build dev` installs the fixture (and nothing else of ours) into model_repository/asr/1/."""
    art = _art("sensevoice_fixture")
    assert art.models == ("asr",)
    assert _art("sensevoice_tiny").models == () and _art("sensevoice_full").models == ()


def test_funasr_onnx_runtime_transcribes_fixture_exactly(fixture):
    """The official ONNX runtime (funasr-onnx, kaldi-native-fbank features) reads our export folder
    as is and reproduces every fixture clip exactly, with the language given and with ``auto``."""
    from funasr_onnx import SenseVoiceSmall

    model = SenseVoiceSmall(str(fixture), batch_size=1, quantize=False, intra_op_num_threads=1)
    z, meta = _fixture_clips(fixture)
    for c in meta:
        for language in (c["language"], "auto"):
            got = model(z[c["key"]], language=language, textnorm="withitn" if c["with_itn"] else "woitn")
            assert got == [c["raw_text"]], (language, c["text"])
