"""The audio fixtures of tests/audio.py are what they claim: timing, levels, formats."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from speechlib.interfaces import SAMPLE_RATE
from tests import audio


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def _gaps(regions, total_s):
    edges = [0.0] + [t for r in regions for t in r] + [total_s]
    return list(zip(edges[::2], edges[1::2], strict=True))


def test_known_silence_regions_are_inside_sorted_and_apart():
    path, regions = audio.known_silence_file()
    x = audio.decode_audio(path)
    total = len(x) / SAMPLE_RATE
    assert x.dtype == np.float32 and x.ndim == 1
    assert 17.0 <= total <= 23.0
    assert len(regions) == len(audio.KNOWN_SILENCE_SCRIPT) == 4
    assert regions == sorted(regions)
    for start, end in regions:
        assert 0.0 < start < end < total
        assert end - start >= 0.5
    gaps = _gaps(regions, total)
    assert all(e - s >= 1.0 - 1e-9 for s, e in gaps), gaps
    # The layout promised by the docstring: the silences before each utterance and at the end.
    expected = [g for g, *_ in audio.KNOWN_SILENCE_SCRIPT] + [audio.KNOWN_SILENCE_TAIL_S]
    assert np.allclose([e - s for s, e in gaps], expected, atol=1e-3)


def test_known_silence_speech_is_loud_and_gaps_are_low_noise():
    path, regions = audio.known_silence_file()
    x = audio.decode_audio(path)
    total = len(x) / SAMPLE_RATE
    for start, end in regions:
        seg = x[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        assert _rms_db(seg) > -35.0
        # The region is tight: its first and last 10 ms carry signal above the noise.
        edge = int(0.01 * SAMPLE_RATE)
        assert _rms_db(seg[:edge]) > audio.NOISE_DBFS + 6 and _rms_db(seg[-edge:]) > audio.NOISE_DBFS + 6
    speech_db = min(_rms_db(x[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)]) for s, e in regions)
    for start, end in _gaps(regions, total):
        gap = x[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        assert abs(_rms_db(gap) - audio.NOISE_DBFS) < 1.0  # just the documented noise floor
        assert np.count_nonzero(gap) > 0.99 * len(gap)  # not digital silence
        assert speech_db - _rms_db(gap) > 30.0


def test_known_silence_utterances_match_regions():
    path, regions = audio.known_silence_file()
    utts = audio.known_silence_utterances()
    assert [(u.start_s, u.end_s) for u in utts] == regions
    assert [u.language for u in utts] == ["en", "en", "zh", "en"]
    assert len({u.voice for u in utts}) == 4


def test_fixtures_are_cached_and_deterministic():
    p1, r1 = audio.known_silence_file()
    mtime = p1.stat().st_mtime_ns
    p2, r2 = audio.known_silence_file()
    assert (p1, r1) == (p2, r2) and p2.stat().st_mtime_ns == mtime
    assert p1.is_relative_to(audio.fixtures_dir())


def test_speak_voices_differ_and_are_16k_mono():
    a = audio.speak("Good morning.", "en-us")
    b = audio.speak("Good morning.", "en-gb+f3")
    slow = audio.speak("Good morning.", "en-us", speed=120)
    for x in (a, b, slow):
        assert x.dtype == np.float32 and x.ndim == 1 and np.abs(x).max() > 0.05
    assert len(slow) > 1.2 * len(a)
    assert len(a) != len(b) or not np.allclose(a, b)
    assert sf.info(str(audio.speak_file("Good morning.", "en-us"))).samplerate == SAMPLE_RATE


def test_trim_silence_drops_padding_only():
    rng = np.random.default_rng(0)
    tone = (0.5 * np.sin(np.arange(8000) * 0.1)).astype(np.float32)
    padded = np.concatenate(
        [np.zeros(3200, np.float32), tone, 1e-4 * rng.standard_normal(4800).astype(np.float32)]
    )
    trimmed = audio.trim_silence(padded)
    assert 7800 <= len(trimmed) <= 8160


def test_decode_audio_converts_rate_and_channels(tmp_path):
    sr = 44100
    t = np.arange(int(1.5 * sr)) / sr
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 440 * t)], axis=1)
    src = tmp_path / "stereo44k.wav"
    sf.write(str(src), stereo, sr)
    x = audio.decode_audio(src)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 1.5 * SAMPLE_RATE) <= 160
    assert 0.2 < np.abs(x).max() < 0.45


def test_pyannote_sample_is_16k_30s_with_two_speakers():
    path, turns = audio.pyannote_sample()
    info = sf.info(str(path))
    assert info.samplerate == SAMPLE_RATE and info.channels == 1
    assert abs(info.frames / info.samplerate - 30.0) < 0.5
    assert len(turns) >= 5
    assert turns == sorted(turns)
    assert {spk for *_, spk in turns} == {"speaker90", "speaker91"}
    for start, end, _ in turns:
        assert 0.0 <= start < end <= 30.0
    stm = audio.pyannote_sample_transcript()
    if stm is not None:
        assert stm and all(s < e and text for s, e, _, text in stm)


def test_parse_rttm(tmp_path):
    rttm = tmp_path / "x.rttm"
    rttm.write_text(
        "SPEAKER f 1 2.50 1.00 <NA> <NA> B <NA> <NA>\n"
        ";; comment\n"
        "SPEAKER f 1 0.25 0.50 <NA> <NA> A <NA> <NA>\n"
    )
    assert audio.parse_rttm(rttm) == [(0.25, 0.75, "A"), (2.5, 3.5, "B")]


def test_merge_regions():
    assert audio.merge_regions([]) == []
    assert audio.merge_regions([(3, 4), (0, 1), (1.2, 2)], max_gap_s=0.0) == [(0, 1), (1.2, 2), (3, 4)]
    assert audio.merge_regions([(3, 4), (0, 1), (1.2, 2)], max_gap_s=0.25) == [(0, 2), (3, 4)]
    assert audio.merge_regions([(0, 5, "A"), (1, 2, "B")], max_gap_s=0) == [(0, 5)]
    assert audio.merge_regions([(0, 1), (1, 2)]) == [(0, 2)]


def test_tiled_repeats_the_source():
    path, turns = audio.pyannote_sample()
    src = audio.decode_audio(path)
    long = audio.tiled(path, 75.0)
    x = audio.decode_audio(long)
    assert len(x) == 75 * SAMPLE_RATE
    q = 1 / 32768  # PCM_16
    assert np.allclose(x[: len(src)], src, atol=q)
    assert np.allclose(x[len(src) : 2 * len(src)], src, atol=q)
    assert np.allclose(x[2 * len(src) :], src[: 15 * SAMPLE_RATE], atol=q)
    assert audio.tiled(path, 75.0) == long
    tt = audio.tile_turns(turns, 30.0, 75.0)
    assert len(tt) > 2 * len(turns) and max(e for _, e, _ in tt) <= 75.0
    assert tt[: len(turns)] == turns
