"""Audio fixtures for tests: real and synthetic speech with known timing, cached on disk.

Everything comes back as 16 kHz mono float32 (``speechlib.interfaces.SAMPLE_RATE``) or as a path to a
16 kHz mono WAV file. Generated files live under ``$INTRASCRIBE_CACHE/fixtures`` (default
``~/.cache/intrascribe/fixtures``), named by a hash of their recipe (inputs, tool versions and
``RECIPE_VERSION``), so they are built once per machine and rebuilt whenever the recipe changes.

Needs ``espeak-ng`` and ``sox`` (``make system-deps``; ``scripts/test.sh`` does it). Files are read back
through the project's one decoder, :func:`inference_client.audio.decode_audio`.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from inference_client.audio import decode_audio
from speechlib.interfaces import SAMPLE_RATE

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_VERSION = 1  # bump to rebuild every cached fixture
PYANNOTE_AUDIO_VERSION = "4.0.7"

Region = tuple[float, float]  # (start_s, end_s)
Turn = tuple[float, float, str]  # (start_s, end_s, speaker)


def cache_root() -> Path:
    return Path(os.environ.get("INTRASCRIBE_CACHE", Path.home() / ".cache" / "intrascribe"))


def fixtures_dir() -> Path:
    d = cache_root() / "fixtures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(recipe: dict) -> str:
    blob = json.dumps({"v": RECIPE_VERSION, **recipe}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_atomic(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` (parallel test runs never see halves)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise RuntimeError(
            f"{tool} is not installed: run `apt-get install -y espeak-ng sox ffmpeg` (or make test)"
        )
    return exe


def _run(cmd: list[str], stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


@functools.cache
def _tool_version(tool: str) -> str:
    out = _run([_need(tool), "--version"])
    return out.decode(errors="replace").strip().splitlines()[0]


# ---------------------------------------------------------------------------------------------------
# Reading and writing


def write_wav(path: str | os.PathLike, audio: np.ndarray, subtype: str = "FLOAT") -> Path:
    """Write 16 kHz mono samples atomically (``subtype`` as soundfile names it: FLOAT, PCM_16)."""
    audio = np.asarray(audio, dtype=np.float32)
    return _write_atomic(
        Path(path), lambda tmp: sf.write(str(tmp), audio, SAMPLE_RATE, subtype=subtype, format="WAV")
    )


# ---------------------------------------------------------------------------------------------------
# Synthetic speech


def speak_file(text: str, voice: str = "en-us", speed: int | None = None, pitch: int | None = None) -> Path:
    """espeak-ng speech as a cached 16 kHz mono float WAV file.

    ``voice`` is an espeak-ng voice, optionally with a variant (``en-us``, ``en-gb+f3``, ``cmn``);
    ``speed`` is words per minute (espeak default 175), ``pitch`` 0-99 (default 50).
    """
    recipe = {
        "kind": "speak",
        "text": text,
        "voice": voice,
        "speed": speed,
        "pitch": pitch,
        "espeak": _tool_version("espeak-ng"),
        "sox": _tool_version("sox"),
    }
    out = fixtures_dir() / "speech" / f"{_key(recipe)}.wav"
    if out.exists():
        return out

    def build(tmp: Path) -> None:
        cmd = [_need("espeak-ng"), "-v", voice, "--stdin"]
        if speed is not None:
            cmd += ["-s", str(speed)]
        if pitch is not None:
            cmd += ["-p", str(pitch)]
        with tempfile.TemporaryDirectory() as d:
            raw = Path(d) / "espeak.wav"
            _run(cmd + ["-w", str(raw)], stdin=text.encode())  # text on stdin: never parsed as an option
            _run(
                [
                    _need("sox"),
                    "-D",
                    str(raw),
                    "-r",
                    str(SAMPLE_RATE),
                    "-c",
                    "1",
                    "-e",
                    "floating-point",
                    "-b",
                    "32",
                    str(tmp),
                ]
            )

    _write_atomic(out, build)
    return out


def speak(text: str, voice: str = "en-us", speed: int | None = None, pitch: int | None = None) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono float32 samples (see :func:`speak_file`)."""
    return decode_audio(speak_file(text, voice, speed, pitch))


TRIM_FRAME_S = 0.010
TRIM_THRESHOLD_DB = -40.0


def trim_silence(audio: np.ndarray, threshold_db: float = TRIM_THRESHOLD_DB) -> np.ndarray:
    """Drop leading/trailing near-silence, as espeak-ng pads its output with some.

    The signal is cut into 10 ms frames; a frame is *active* when its RMS is within ``threshold_db``
    (default -40 dB) of the loudest frame's RMS. The result runs from the first sample of the first
    active frame to the last sample of the last active frame (pauses between words stay).
    """
    n = int(round(TRIM_FRAME_S * SAMPLE_RATE))
    frames = len(audio) // n
    if frames == 0:
        return audio[:0]
    rms = np.sqrt(np.mean(audio[: frames * n].reshape(frames, n).astype(np.float64) ** 2, axis=1))
    active = np.flatnonzero(rms >= rms.max() * 10 ** (threshold_db / 20))
    return audio[active[0] * n : (active[-1] + 1) * n].astype(np.float32)


@dataclass(frozen=True)
class Utterance:
    """One utterance of a synthetic recording: where its speech lies (seconds), what it says."""

    start_s: float
    end_s: float
    text: str
    voice: str
    language: str


# (silence before it in s, text, espeak voice, language); then KNOWN_SILENCE_TAIL_S of silence.
KNOWN_SILENCE_SCRIPT: tuple[tuple[float, str, str, str], ...] = (
    (1.0, "The quarterly budget review will start at nine thirty tomorrow morning.", "en-us", "en"),
    (1.5, "Please send me the updated slides before the meeting ends today.", "en-gb+f3", "en"),
    (2.0, "我们明天下午开会讨论新项目。", "cmn", "zh"),
    (1.2, "Thank you, everyone.", "en-us+m7", "en"),
)
KNOWN_SILENCE_TAIL_S = 1.0
NOISE_DBFS = -60.0  # RMS of the white noise under the whole file (full scale = 1.0)
NOISE_SEED = 20240611


def _known_silence_build() -> tuple[Path, list[Utterance]]:
    recipe = {
        "kind": "known_silence",
        "script": KNOWN_SILENCE_SCRIPT,
        "tail": KNOWN_SILENCE_TAIL_S,
        "noise_dbfs": NOISE_DBFS,
        "seed": NOISE_SEED,
        "trim": [TRIM_FRAME_S, TRIM_THRESHOLD_DB],
        "espeak": _tool_version("espeak-ng"),
        "sox": _tool_version("sox"),
    }
    out = fixtures_dir() / f"known_silence-{_key(recipe)}.wav"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists():
        return out, [Utterance(**u) for u in json.loads(meta.read_text())]

    pieces: list[np.ndarray] = []
    utterances: list[Utterance] = []
    pos = 0  # samples
    for gap_s, text, voice, language in KNOWN_SILENCE_SCRIPT:
        gap = int(round(gap_s * SAMPLE_RATE))
        speech = trim_silence(speak(text, voice))
        pieces += [np.zeros(gap, np.float32), speech]
        start = pos + gap
        pos = start + len(speech)
        utterances.append(Utterance(start / SAMPLE_RATE, pos / SAMPLE_RATE, text, voice, language))
    pieces.append(np.zeros(int(round(KNOWN_SILENCE_TAIL_S * SAMPLE_RATE)), np.float32))
    audio = np.concatenate(pieces)
    noise = np.random.default_rng(NOISE_SEED).standard_normal(len(audio)) * 10 ** (NOISE_DBFS / 20)
    audio = np.clip(audio + noise.astype(np.float32), -1.0, 1.0).astype(np.float32)
    write_wav(out, audio)
    _write_atomic(
        meta, lambda tmp: tmp.write_text(json.dumps([asdict(u) for u in utterances], ensure_ascii=False))
    )
    return out, utterances


def known_silence_file() -> tuple[Path, list[Region]]:
    """A ~20 s 16 kHz recording with known speech regions, and those regions as (start_s, end_s).

    Layout: 1.0 s silence, English sentence (en-us), 1.5 s silence, English sentence (en-gb+f3),
    2.0 s silence, Mandarin sentence (cmn), 1.2 s silence, short English phrase (en-us+m7), 1.0 s
    silence. Each utterance is espeak-ng's output with its own leading/trailing near-silence trimmed
    (:func:`trim_silence`: 10 ms frames, -40 dB below the loudest frame), so a region is exactly the
    span of samples that utterance occupies; the silences between them are digital zeros. White
    Gaussian noise at -60 dBFS RMS with a fixed seed lies under the whole file, so the silences are
    not trivially digital zero but stay ~40-50 dB below the speech.
    """
    path, utterances = _known_silence_build()
    return path, [(u.start_s, u.end_s) for u in utterances]


def known_silence_utterances() -> list[Utterance]:
    """The utterances of :func:`known_silence_file` with their text, voice and language."""
    return _known_silence_build()[1]


# ---------------------------------------------------------------------------------------------------
# pyannote's sample (real speech, two speakers, reference turns)


def _pyannote_sample_dir() -> Path:
    """The ``pyannote/audio/sample`` folder of the pyannote.audio wheel.

    Taken from the export environment when it exists, else from the wheel itself, downloaded once
    with ``pip download --no-deps`` into the cache (so quick tests need no export environment).
    """
    for site in sorted(glob.glob(str(REPO_ROOT / ".envs" / "export" / "lib" / "python3*" / "site-packages"))):
        d = Path(site) / "pyannote" / "audio" / "sample"
        if (d / "sample.wav").exists() and (d / "sample.rttm").exists():
            return d
    dest = fixtures_dir() / f"pyannote.audio-{PYANNOTE_AUDIO_VERSION}" / "sample"
    if (dest / "sample.wav").exists() and (dest / "sample.rttm").exists():
        return dest
    wheels = fixtures_dir() / "wheels"
    pattern = f"pyannote_audio-{PYANNOTE_AUDIO_VERSION}-*.whl"
    if not list(wheels.glob(pattern)):
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                f"pyannote.audio=={PYANNOTE_AUDIO_VERSION}",
                "-d",
                str(wheels),
            ]
        )
    found = sorted(wheels.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download left no {pattern} in {wheels}")
    with zipfile.ZipFile(found[-1]) as whl:
        names = set(whl.namelist())
        for name in ("sample.wav", "sample.rttm", "sample.stm"):
            member = f"pyannote/audio/sample/{name}"
            if member in names:
                data = whl.read(member)
                _write_atomic(dest / name, lambda tmp, data=data: tmp.write_bytes(data))
    return dest


def parse_rttm(path: str | os.PathLike) -> list[Turn]:
    """RTTM ``SPEAKER`` lines -> sorted (start_s, end_s, speaker)."""
    turns = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            turns.append((start, round(start + dur, 6), f[7]))
    return sorted(turns)


def pyannote_sample() -> tuple[Path, list[Turn]]:
    """pyannote.audio's ``sample.wav`` (30 s, 16 kHz, two speakers) and its reference turns (RTTM)."""
    d = _pyannote_sample_dir()
    return d / "sample.wav", parse_rttm(d / "sample.rttm")


def pyannote_sample_transcript() -> list[tuple[float, float, str, str]] | None:
    """``sample.stm`` as (start_s, end_s, speaker, text) rows, or None if the wheel has none."""
    stm = _pyannote_sample_dir() / "sample.stm"
    if not stm.exists():
        return None
    rows = []
    for line in stm.read_text().splitlines():
        f = line.split(maxsplit=5)
        if len(f) >= 5 and not line.startswith(";;"):
            rows.append((float(f[3]), float(f[4]), f[2], f[5] if len(f) > 5 else ""))
    return rows


# ---------------------------------------------------------------------------------------------------
# Helpers


def merge_regions(regions: Iterable[Sequence[float]], max_gap_s: float = 0.0) -> list[Region]:
    """Sort (start_s, end_s) regions and merge those that overlap or are at most ``max_gap_s`` apart.

    Extra fields (e.g. a speaker label) are ignored.
    """
    merged: list[list[float]] = []
    for start, end, *_ in sorted((float(r[0]), float(r[1])) for r in regions):
        if merged and start - merged[-1][1] <= max_gap_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def tiled(path: str | os.PathLike, seconds: float) -> Path:
    """A cached 16 kHz mono 16-bit WAV of ``seconds`` made by repeating ``path`` end to end.

    The last copy is cut short. Written block by block, so hours of audio need little memory.
    Repetition k of the source starts at ``k * len(source)``; see :func:`tile_turns`.
    """
    path = Path(path).resolve()
    st = path.stat()
    recipe = {
        "kind": "tiled",
        "src": str(path),
        "size": st.st_size,
        "mtime": st.st_mtime_ns,
        "seconds": seconds,
    }
    out = fixtures_dir() / "tiled" / f"{path.stem}-{seconds:g}s-{_key(recipe)}.wav"
    if out.exists():
        return out
    src = decode_audio(path)
    if len(src) == 0:
        raise ValueError(f"{path} has no samples")
    total = int(round(seconds * SAMPLE_RATE))

    def build(tmp: Path) -> None:
        with sf.SoundFile(str(tmp), "w", SAMPLE_RATE, 1, subtype="PCM_16", format="WAV") as f:
            written = 0
            while written < total:
                block = src[: total - written]
                f.write(block)
                written += len(block)

    _write_atomic(out, build)
    return out


def tile_turns(turns: Iterable[Turn], period_s: float, seconds: float) -> list[Turn]:
    """Turns of a source of ``period_s`` seconds, repeated as :func:`tiled` repeats the audio."""
    out: list[Turn] = []
    base = list(turns)
    k = 0
    while k * period_s < seconds:
        for start, end, spk in base:
            s, e = start + k * period_s, min(end + k * period_s, seconds)
            if s < seconds and e > s:
                out.append((s, e, spk))
        k += 1
    return sorted(out)


def duration_s(path: str | os.PathLike) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def shuffled_tiling(
    path: str | os.PathLike, sources: Sequence[np.ndarray], seconds: float, seed: int
) -> Path:
    """A 16 kHz mono 16-bit WAV of ``seconds`` made of whole ``sources`` (float32 waveforms) picked at
    random and each scaled by a random gain in [0.5, 1]; the last piece is cut short. Written piece by
    piece (hours need little memory). Deterministic for a seed; written at ``path`` (not cached)."""
    rng = np.random.default_rng(seed)
    total = int(round(seconds * SAMPLE_RATE))

    def build(tmp: Path) -> None:
        with sf.SoundFile(str(tmp), "w", SAMPLE_RATE, 1, subtype="PCM_16", format="WAV") as f:
            written = 0
            while written < total:
                src = sources[int(rng.integers(len(sources)))]
                piece = np.clip(src[: total - written] * float(rng.uniform(0.5, 1.0)), -1.0, 1.0)
                f.write(piece.astype(np.float32))
                written += len(piece)

    return _write_atomic(Path(path), build)


def wav_chunks(path: str | os.PathLike, seconds: float = 20.0) -> Iterable[np.ndarray]:
    """The samples of a WAV file as float32 chunks of ``seconds`` (the way a worker streams a file)."""
    with sf.SoundFile(str(path)) as f:
        yield from f.blocks(blocksize=int(seconds * f.samplerate), dtype="float32")
