"""The one audio decoder (inference_client.audio) on what users upload: every container and codec a
meeting recording comes in is resampled to 16 kHz mono with its content intact (a 440 Hz tone stays
440 Hz, the duration stays the duration), and what is not audio is refused with a reason.

Files are written with PyAV's encoders (the wheel bundles FFmpeg's lame/aac/opus/flac/mpeg4) and
checked by content with numpy, not against the decoder's own output.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from inference_client.audio import AudioDecodeError, decode_audio, iter_audio, probe_audio
from speechlib.interfaces import SAMPLE_RATE

TONE_HZ = 440.0
SECONDS = 2.0


def tone(rate: int, seconds: float = SECONDS, channels: int = 1, amplitude: float = 0.4) -> np.ndarray:
    """[channels, n] float32: a 440 Hz tone on channel 0, silence on the others."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros((channels, t.size), np.float32)
    x[0] = amplitude * np.sin(2 * np.pi * TONE_HZ * t)
    return x


def encode(path: Path, codec: str, rate: int, x: np.ndarray, video: bool = False) -> Path:
    """Write ``x`` ([channels, n] float32) with PyAV's ``codec`` into ``path`` (container from the suffix)."""
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    with av.open(str(path), "w") as out:
        if video:
            v = out.add_stream("mpeg4", rate=10)
            v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        stream = out.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.codec.audio_formats[0].name  # the encoder's native sample format
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        block = 1024
        for i in range(0, x.shape[1], block):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, i : i + block]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            frame.pts, frame.time_base = i, Fraction(1, rate)
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
        if video:
            for k in range(int(SECONDS * 10)):
                img = av.VideoFrame.from_ndarray(np.full((32, 32, 3), k * 10 % 255, np.uint8), format="rgb24")
                img.pts = k
                out.mux(v.encode(img))
            out.mux(v.encode(None))
    return path


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / x.size)


def assert_is_the_tone(
    y: np.ndarray, seconds: float = SECONDS, amplitude: float = 0.4, tolerance_s: float = 0.1
):
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size / SAMPLE_RATE - seconds) <= tolerance_s, y.size / SAMPLE_RATE
    assert abs(dominant_hz(y) - TONE_HZ) < 5.0
    # level in the middle half (lossy codecs ring at the abrupt start and end of a test tone)
    middle = y[y.size // 4 : 3 * y.size // 4]
    rms = float(np.sqrt(np.mean(middle.astype(np.float64) ** 2)))
    assert 0.8 * amplitude / math.sqrt(2) < rms < 1.2 * amplitude / math.sqrt(2), rms


# -- what users upload: decoded, resampled, mixed down ----------------------------------------------


@pytest.mark.parametrize(
    "name, codec, rate, channels",
    [
        ("meeting.mp3", "libmp3lame", 44100, 2),
        ("meeting.m4a", "aac", 48000, 2),
        ("meeting.ogg", "libopus", 48000, 1),
        ("meeting.webm", "libopus", 48000, 2),
        ("meeting.flac", "flac", 22050, 1),
        ("meeting.wav", "pcm_s16le", 8000, 2),
        ("meeting.wav", "pcm_f32le", 96000, 1),
        ("meeting.wav", "pcm_s24le", 16000, 1),
    ],
    ids=[
        "mp3-44k-stereo",
        "m4a-aac-48k",
        "ogg-opus",
        "webm-opus",
        "flac-22k",
        "wav-8k-stereo",
        "wav-96k-float",
        "wav-24bit",
    ],
)
def test_formats_users_upload_come_back_as_16k_mono(tmp_path, name, codec, rate, channels):
    path = encode(tmp_path / name, codec, rate, tone(rate, channels=channels))
    info = probe_audio(path)
    assert info.sample_rate == rate and info.channels == channels
    # a lossy codec's priming samples and frame padding move the length by a few tens of ms at most
    y = decode_audio(path)
    # stereo with the tone on one channel: the mix-down is the mean, so half the amplitude
    assert_is_the_tone(y, amplitude=0.4 / channels)


def test_audio_inside_a_video_container(tmp_path):
    path = encode(tmp_path / "recording.mp4", "aac", 44100, tone(44100), video=True)
    assert_is_the_tone(decode_audio(path))


def test_a_wrong_extension_does_not_matter(tmp_path):
    path = encode(tmp_path / "really-an-mp3.mp3", "libmp3lame", 44100, tone(44100))
    path = path.rename(tmp_path / "really-an-mp3.wav")
    assert probe_audio(path).format == "mp3"
    assert_is_the_tone(decode_audio(path))


def test_16k_mono_is_read_bit_exact(tmp_path):
    """No resampling at the models' rate: parity tests compare our outputs with FunASR's and
    pyannote's on exactly these samples (int PCM scaled as soundfile scales it)."""
    x = tone(SAMPLE_RATE)[0]
    for subtype in ("PCM_16", "FLOAT"):
        path = tmp_path / f"x_{subtype}.wav"
        sf.write(str(path), x, SAMPLE_RATE, subtype=subtype)
        expected, _ = sf.read(str(path), dtype="float32")
        np.testing.assert_array_equal(decode_audio(path), expected)


def test_blocks_cover_the_file_exactly_once(tmp_path):
    path = encode(tmp_path / "long.flac", "flac", 44100, tone(44100, seconds=7.3))
    whole = decode_audio(path)
    blocks = list(iter_audio(path, block_s=2.0))
    assert [b.size for b in blocks[:-1]] == [2 * SAMPLE_RATE] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_a_header_that_lies_about_its_length_gives_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(str(path), tone(SAMPLE_RATE, seconds=3.0)[0], SAMPLE_RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + SAMPLE_RATE * 2])  # the header still claims 3 s; 1 s is there
    assert_is_the_tone(decode_audio(path), seconds=1.0, tolerance_s=0.01)


# -- what is not audio: refused with a reason -------------------------------------------------------


def test_not_audio_is_refused(tmp_path):
    cases = {
        "empty.wav": b"",
        "report.pdf": b"%PDF-1.7\n" + bytes(range(256)) * 40,
        "notes.mp3": ("meeting notes, not audio\n" * 200).encode(),
        "random.m4a": np.random.default_rng(0).bytes(50_000),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AudioDecodeError) as err:
            decode_audio(path)
        assert str(err.value), name


def test_video_without_audio_is_refused(tmp_path):
    path = tmp_path / "silent-film.mp4"
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        for k in range(10):
            img = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            img.pts = k
            out.mux(v.encode(img))
        out.mux(v.encode(None))
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        probe_audio(path)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        decode_audio(path)


def test_nan_or_infinite_samples_are_refused(tmp_path):
    for bad in (math.nan, math.inf):
        x = tone(SAMPLE_RATE)[0]
        x[100] = bad
        path = tmp_path / f"bad_{bad}.wav"
        sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")
        with pytest.raises(AudioDecodeError, match="NaN or infinite"):
            decode_audio(path)


def test_a_header_with_no_samples_is_refused(tmp_path):
    path = tmp_path / "header-only.wav"
    sf.write(str(path), np.zeros(0, np.float32), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(AudioDecodeError, match="no samples"):
        decode_audio(path)


def test_a_very_short_clip_decodes_and_says_how_short(tmp_path):
    """50 ms decode fine; refusing clips under 100 ms is the api's decision (it reads the length)."""
    path = tmp_path / "blip.wav"
    sf.write(str(path), tone(SAMPLE_RATE, seconds=0.05)[0], SAMPLE_RATE, subtype="PCM_16")
    assert decode_audio(path).size == 800
    assert probe_audio(path).duration_s == pytest.approx(0.05, abs=1e-3)
