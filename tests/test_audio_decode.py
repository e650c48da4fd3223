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

from inference_client.audio import (
    MIN_DURATION_S,
    AudioDecodeError,
    check_audio,
    decode_audio,
    iter_audio,
    probe_audio,
)
from speechlib.interfaces import SAMPLE_RATE

TONE_HZ = 440.0
SECONDS = 2.0


def tone(rate: int, seconds: float = SECONDS, channels: int = 1, amplitude: float = 0.4) -> np.ndarray:
    """[channels, n] float32: a 440 Hz tone on channel 0, silence on the others."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros((channels, t.size), np.float32)
    x[0] = amplitude * np.sin(2 * np.pi * TONE_HZ * t)
    return x


def encode(
    path: Path, codec: str, rate: int, x: np.ndarray, video: bool = False, options: dict | None = None
) -> Path:
    """Write ``x`` ([channels, n] float32) with PyAV's ``codec`` into ``path`` (container from the
    suffix; ``options``: the muxer's, e.g. ``{"movflags": "faststart"}``)."""
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    seconds = x.shape[1] / rate
    with av.open(str(path), "w", options=options or {}) as out:
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
            for k in range(int(seconds * 10)):
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
    checked = check_audio(path)  # the upload's check measures what is there (m4a and webm too)
    assert (checked.sample_rate, checked.channels) == (rate, channels)
    assert checked.duration_s == pytest.approx(SECONDS, abs=0.05)


@pytest.mark.parametrize(
    "name, codec, rate", [("recording.mp4", "aac", 44100), ("recording.mkv", "libopus", 48000)]
)
def test_audio_inside_a_video_container(tmp_path, name, codec, rate):
    path = encode(tmp_path / name, codec, rate, tone(rate), video=True)
    assert_is_the_tone(decode_audio(path))
    assert check_audio(path).duration_s == pytest.approx(SECONDS, abs=0.05)


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
    assert check_audio(path).duration_s == 1.0  # measured, not the header's claim


# -- what is not audio: refused with a reason -------------------------------------------------------


def video_only(path: Path) -> Path:
    """One second of MPEG-4 video in ``path``, no audio stream."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        for k in range(10):
            img = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            img.pts = k
            out.mux(v.encode(img))
        out.mux(v.encode(None))
    return path


def test_video_without_audio_is_refused(tmp_path):
    path = video_only(tmp_path / "silent-film.mp4")
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        probe_audio(path)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        decode_audio(path)


def test_nan_or_infinite_samples_are_refused_saying_where(tmp_path):
    """Refused, not replaced: a float file with NaN/inf is broken upstream (docs/bad-input.md)."""
    for bad in (math.nan, math.inf, -math.inf):
        x = tone(SAMPLE_RATE)[0]
        x[8000] = x[8001] = x[8002] = bad
        path = tmp_path / f"bad_{bad}.wav"
        sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")
        for read in (decode_audio, check_audio):
            with pytest.raises(
                AudioDecodeError, match=r"3 NaN or infinite samples \(the first at 0\.500 s\)"
            ) as e:
                read(path)
            assert e.value.code == "non_finite_samples"


def test_nan_at_96k_stereo_is_found_where_it_is(tmp_path):
    x = tone(96000, channels=2)
    x[1, 96000 + 48000] = math.nan  # 1.5 s, on the silent channel
    path = tmp_path / "bad.wav"
    sf.write(str(path), x.T, 96000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"1 NaN or infinite samples \(the first at 1\.500 s\)"):
        check_audio(path)
    with pytest.raises(AudioDecodeError, match="NaN or infinite"):
        decode_audio(path)


def test_a_header_with_no_samples_is_refused(tmp_path):
    path = tmp_path / "header-only.wav"
    sf.write(str(path), np.zeros(0, np.float32), SAMPLE_RATE, subtype="PCM_16")
    for read in (decode_audio, check_audio):
        with pytest.raises(AudioDecodeError, match="no samples") as e:
            read(path)
        assert e.value.code == "no_samples"
    assert list(iter_audio(path)) == []  # the job's decoder gives nothing (an empty transcript)


@pytest.mark.parametrize("seconds", [0.01, 0.05, 0.099])
def test_clips_under_100_ms_are_refused(tmp_path, seconds):
    path = tmp_path / "blip.wav"
    sf.write(str(path), tone(SAMPLE_RATE, seconds=seconds)[0], SAMPLE_RATE, subtype="PCM_16")
    for read in (decode_audio, check_audio):
        with pytest.raises(AudioDecodeError, match=f"{seconds * 1000:.0f} ms long; at least 100 ms") as e:
            read(path)
        assert e.value.code == "too_short"


def test_a_clip_just_over_100_ms_is_accepted(tmp_path):
    path = encode(tmp_path / "blip.ogg", "libopus", 48000, tone(48000, seconds=0.15))
    assert check_audio(path).duration_s >= MIN_DURATION_S
    assert decode_audio(path).size >= MIN_DURATION_S * SAMPLE_RATE


def test_minutes_of_pure_silence_decode_to_zeros(tmp_path):
    path = encode(tmp_path / "silence.flac", "flac", 48000, np.zeros((2, 48000 * 180), np.float32))
    assert check_audio(path).duration_s == pytest.approx(180.0, abs=0.01)
    y = decode_audio(path)
    assert y.size == 180 * SAMPLE_RATE and not y.any()


def test_empty_and_non_audio_files_say_which(tmp_path):
    cases = {
        "empty.wav": (b"", "empty_file"),
        "report.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 40, "not_audio"),
        "notes.mp3": (("meeting notes, not audio\n" * 200).encode(), "not_audio"),
        "notes.txt": (
            ("meeting notes, not audio\n" * 200).encode(),
            "no_audio_stream",
        ),  # FFmpeg: a tty "video"
        "random.m4a": (np.random.default_rng(0).bytes(50_000), "not_audio"),
    }
    for name, (data, code) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for read in (probe_audio, check_audio, decode_audio):
            with pytest.raises(AudioDecodeError) as e:
                read(path)
            assert e.value.code == code, (name, read.__name__, e.value)
            assert str(tmp_path) not in str(e.value)  # no server path in what a client is told


# -- files cut short, damaged, or whose header claims another length ---------------------------------


@pytest.mark.parametrize(
    "name, codec, rate",
    [
        ("cut.mp3", "libmp3lame", 44100),
        ("cut.flac", "flac", 22050),
        ("cut.ogg", "libopus", 48000),
        ("cut.webm", "libopus", 48000),
    ],
)
def test_a_file_cut_in_half_gives_what_is_there_whatever_its_header_claims(tmp_path, name, codec, rate):
    path = encode(tmp_path / name, codec, rate, tone(rate, seconds=4.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    y = decode_audio(path)
    assert 1.0 < y.size / SAMPLE_RATE < 3.0, y.size / SAMPLE_RATE  # about half of 4 s is there
    assert abs(dominant_hz(y) - TONE_HZ) < 5.0
    measured = check_audio(path).duration_s
    assert measured == pytest.approx(y.size / SAMPLE_RATE, abs=0.05)
    if name != "cut.ogg":  # (the ogg demuxer reads the last page's time: it claims what is there)
        assert probe_audio(path).duration_s > measured + 0.5  # the header claims the whole 4 s


@pytest.mark.parametrize(
    "riff_size, data_size", [(None, 0xFFFFFFFF), (None, 0), (0, 0), (0xFFFFFFFF, 0xFFFFFFFF)]
)
def test_a_wav_header_claiming_any_length_is_read_to_the_end_of_the_file(tmp_path, riff_size, data_size):
    """Recorders that stream write 0xFFFFFFFF or 0 as the sizes until they finish (and a crash
    leaves them so): FFmpeg reads to the end of the file."""
    path = tmp_path / "streamed.wav"
    sf.write(str(path), tone(SAMPLE_RATE, seconds=1.5)[0], SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    if riff_size is not None:
        data[4:8] = riff_size.to_bytes(4, "little")
    data[40:44] = data_size.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert_is_the_tone(decode_audio(path), seconds=1.5, tolerance_s=0.001)
    assert check_audio(path).duration_s == 1.5


def test_an_m4a_cut_before_its_index_is_not_readable(tmp_path):
    path = encode(tmp_path / "cut.m4a", "aac", 48000, tone(48000, seconds=4.0))  # index (moov) at the end
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for read in (check_audio, decode_audio):
        with pytest.raises(AudioDecodeError, match="not a readable audio file") as e:
            read(path)
        assert e.value.code == "not_audio"


def zeroed_m4a(path: Path) -> Path:
    """An m4a whose index (moov, first: faststart) is intact and whose samples (mdat) are zeros."""
    encode(path, "aac", 48000, tone(48000, seconds=4.0), options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    start = data.index(b"mdat") + 4
    assert start < len(data) // 4
    data[start:] = bytes(len(data) - start)
    path.write_bytes(bytes(data))
    return path


def test_packets_that_all_fail_to_decode_are_corrupt_audio(tmp_path):
    path = zeroed_m4a(tmp_path / "zeroed.m4a")
    assert probe_audio(path).duration_s == pytest.approx(4.0, abs=0.05)  # the index looks fine
    for read in (check_audio, decode_audio):
        with pytest.raises(AudioDecodeError, match="none of the audio's .* packets decodes") as e:
            read(path)
        assert e.value.code == "corrupt_audio"


def test_packets_damaged_mid_file_are_skipped_and_their_time_kept(tmp_path):
    """As the ffmpeg command line does: a damaged stretch loses its packets, not the recording, and
    what follows stays at its time (silence fills the skipped packets)."""
    path = encode(
        tmp_path / "damaged.m4a", "aac", 48000, tone(48000, seconds=4.0), options={"movflags": "faststart"}
    )
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * 0.45), int(len(data) * 0.5)
    data[a:b] = bytes(b - a)
    path.write_bytes(bytes(data))
    y = decode_audio(path)
    assert y.size / SAMPLE_RATE == pytest.approx(4.0, abs=0.05)
    zero = np.flatnonzero(y == 0.0)  # the skipped packets' time: exact zeros, in one run
    assert zero.size > 0.1 * SAMPLE_RATE and zero[-1] - zero[0] == zero.size - 1, zero.size
    assert (
        abs(dominant_hz(y[:SAMPLE_RATE]) - TONE_HZ) < 5.0
        and abs(dominant_hz(y[-SAMPLE_RATE:]) - TONE_HZ) < 5.0
    )
    assert check_audio(path).duration_s == pytest.approx(y.size / SAMPLE_RATE, abs=0.05)


def test_the_upload_check_decodes_only_the_first_minute(tmp_path):
    """check_audio stays cheap on hours: past CHECK_DECODE_S it only counts packets. A NaN at 90 s
    passes it (the job's decode refuses it: docs/bad-input.md), its length is still measured."""
    rate = SAMPLE_RATE  # (resampling would spread the NaN over its neighbours)
    x = np.zeros(rate * 120, np.float32)
    x[rate * 90] = math.nan
    path = tmp_path / "late-nan.wav"
    sf.write(str(path), x, rate, subtype="FLOAT")
    assert check_audio(path).duration_s == 120.0
    with pytest.raises(AudioDecodeError, match=r"1 NaN or infinite samples \(the first at 90\.000 s\)") as e:
        decode_audio(path)
    assert e.value.code == "non_finite_samples"


def test_a_missing_file_is_not_called_bad_audio(tmp_path):
    """A file that cannot be read is the server's problem (a lost blob, a full disk): it raises as
    an OSError, never as AudioDecodeError (which would fail a job as the user's mistake)."""
    for read in (probe_audio, check_audio, decode_audio):
        with pytest.raises(FileNotFoundError) as e:
            read(tmp_path / "gone.wav")
        assert not isinstance(e.value, AudioDecodeError)
