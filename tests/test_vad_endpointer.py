"""Our fsmn-VAD end-pointer port against funasr-onnx's E2EVadModel (the reference, MIT), decision for
decision: the same scores and waveform go into both, chunk by chunk, and every chunk's events agree."""

from __future__ import annotations

import numpy as np
import pytest
from funasr_onnx.utils.e2e_vad import E2EVadModel

from speechlib.features import FRAME_LENGTH, FRAME_SHIFT, frame_decibels, num_frames
from speechlib.vad import Endpointer, SpeechEvent, VadConfig, events_to_segments

REFERENCE_CONF = {  # fsmn-VAD's shipped model_conf, with our 30 s segment cap
    "sample_rate": 16000,
    "detect_mode": 1,
    "snr_mode": 0,
    "max_end_silence_time": 800,
    "max_start_silence_time": 3000,
    "do_start_point_detection": True,
    "do_end_point_detection": True,
    "window_size_ms": 200,
    "sil_to_speech_time_thres": 150,
    "speech_to_sil_time_thres": 150,
    "speech_2_noise_ratio": 1.0,
    "do_extend": 1,
    "lookback_time_start_point": 200,
    "lookahead_time_end_point": 100,
    "max_single_segment_time": 30000,
    "snr_thres": -100.0,
    "noise_frame_num_used_for_snr": 100,
    "decibel_thres": -100.0,
    "speech_noise_thres": 0.6,
    "fe_prior_thres": 0.0001,
    "silence_pdf_num": 1,
    "sil_pdf_ids": [0],
    "speech_noise_thresh_low": -0.1,
    "speech_noise_thresh_high": 0.3,
    "output_frame_probs": False,
    "frame_in_ms": 10,
    "frame_length_ms": 25,
}


def synthetic_case(rng: np.random.Generator, seconds: float, max_run_s: float = 3.0):
    """A waveform and per-frame silence posteriors with random speech/silence runs and flicker."""
    n = int(seconds * 16000)
    frames = num_frames(n)
    silence = np.empty(frames)
    t = 0
    speaking = bool(rng.integers(2))
    while t < frames:
        run = int(rng.integers(3, int(max_run_s * 100)))
        level = rng.uniform(0.0, 0.3) if speaking else rng.uniform(0.7, 1.0)
        silence[t : t + run] = level
        t += run
        speaking = not speaking
    silence[50:170] = 0.05  # at least one clear 1.2 s utterance
    flicker = rng.random(frames) < 0.08
    silence[flicker] = 1.0 - silence[flicker]
    silence = np.clip(silence + rng.normal(0, 0.05, frames), 1e-4, 1 - 1e-4)
    wave = (rng.normal(0, 1, n) * rng.choice([1e-3, 0.1, 0.3], n)).astype(np.float32)
    return wave, silence


def reference_events(wave, silence, chunk_frames, max_end_sil):
    """Run funasr-onnx's E2EVadModel online, chunk by chunk, as its Fsmn_vad_online runtime does."""
    model = E2EVadModel(REFERENCE_CONF)
    frames = len(silence)
    out = []
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        scores = np.zeros((1, stop - start, 248), dtype=np.float32)
        scores[0, :, 0] = silence[start:stop]
        pkg = wave[None, start * FRAME_SHIFT : (stop - 1) * FRAME_SHIFT + FRAME_LENGTH]
        segs = model(scores, pkg, is_final=stop == frames, max_end_sil=max_end_sil, online=True)
        chunk = []
        for s, e in segs[0] if segs else []:
            chunk.append(SpeechEvent(None if s == -1 else s, None if e == -1 else e))
        out.append(chunk)
    return out


def our_events(wave, silence, chunk_frames, max_end_sil):
    cfg = VadConfig.from_dict(REFERENCE_CONF)
    ep = Endpointer(cfg, max_end_sil)
    db = frame_decibels(wave)
    frames = len(silence)
    return [
        ep.push_frames(
            silence[s : s + chunk_frames], db[s : s + chunk_frames], final=s + chunk_frames >= frames
        )
        for s in range(0, frames, chunk_frames)
    ]


@pytest.mark.parametrize("seed", range(40))
def test_chunk_by_chunk_events_equal_funasr_onnx(seed):
    rng = np.random.default_rng(seed)
    wave, silence = synthetic_case(
        rng, seconds=float(rng.uniform(2, 40)), max_run_s=float(rng.choice([1, 3, 12]))
    )
    chunk = int(rng.choice([1, 7, 20, 600]))
    max_end_sil = int(rng.choice([300, 500, 800, 1500]))
    ref = reference_events(wave, silence, chunk, max_end_sil)
    ours = our_events(wave, silence, chunk, max_end_sil)
    assert ours == ref
    assert sum(len(c) for c in ours) > 0


def test_segments_respect_the_single_segment_cap():
    # 70 s of continuous speech: funasr cuts at max_single_segment_time (30 s here).
    rng = np.random.default_rng(7)
    frames = 7000
    silence = np.full(frames, 0.02)
    wave = rng.normal(0, 0.1, (frames - 1) * FRAME_SHIFT + FRAME_LENGTH).astype(np.float32)
    events = [e for chunk in our_events(wave, silence, 50, 800) for e in chunk]
    segments = events_to_segments(events)
    assert len(segments) >= 3
    assert all(end - start <= 30000 + 10 for start, end in segments)
    assert [e for c in reference_events(wave, silence, 50, 800) for e in c] == events


def test_silence_only_gives_no_segment():
    rng = np.random.default_rng(3)
    wave, _ = synthetic_case(rng, 5.0)
    silence = np.full(num_frames(len(wave)), 0.99)
    assert [e for c in our_events(wave, silence, 20, 800) for e in c] == []


def test_finished_endpointer_refuses_more_frames():
    ep = Endpointer(VadConfig())
    ep.push_frames(np.full(5, 0.9), np.full(5, -30.0), final=True)
    with pytest.raises(RuntimeError):
        ep.push_frames(np.full(1, 0.9), np.full(1, -30.0))
