"""Write perf_analyzer's ``--input-data`` JSON files, one per Triton model, from real speech.

perf_analyzer's default random input holds NaN/inf, which our models rightly refuse; ``LANGUAGE``
needs real strings and the ragged ``WAVEFORM``/``AUDIO_CHUNK``/``MASKS`` inputs need a shape per
entry. These files give each model real speech (pyannote.audio's ``sample.wav``: 30 s, two human
speakers, 16 kHz) at several lengths, in perf_analyzer's "Real Input Data" format::

    {"data": [{"INPUT": {"content": [...], "shape": [...]}, ...}, ...]}          # one entry per request
    {"data": [[{step 1}, {step 2}, ...], [...]]}                                 # sequences (vad_stream)

The recording is scaled to peak at 0.9 and samples are rounded to 3 decimals (about 10 bits: plenty for timing, and it keeps all five files
under 2 MB). The files are deterministic: ``python -m bench.perf_analyzer.make_inputs`` rewrites
them byte for byte; tests/test_perf_analyzer_inputs.py checks that and feeds every entry to its
model on a real tritonserver.

Usage: python -m bench.perf_analyzer.make_inputs [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 16000
WINDOW = 160000  # segmentation / speaker_embedding: 10 s windows
FRAMES = 589  # segmentation frames per window (speaker_embedding MASKS width)
DECIMALS = 3
PEAK = 0.9

# (start_s, seconds, LANGUAGE, USE_ITN) of each asr request: speech from sample.wav's turns
ASR_ENTRIES = [(6.69, 0.5, "en", True), (8.32, 1.5, "auto", False), (10.57, 2.5, "en", True)]
# (start_s, seconds, MAX_END_SILENCE_MS or None) of each vad request
VAD_ENTRIES = [(6.0, 1.5, None), (7.5, 3.0, 500)]
# (start_s, seconds, chunk_ms, MAX_END_SILENCE_MS) of each vad_stream sequence
STREAM_ENTRIES = [(6.5, 1.2, 200, 800), (14.5, 0.8, 100, 500)]
# the 10 s window of segmentation / speaker_embedding: speech from WINDOW_START_S for
# WINDOW_SPEECH_S, then zeros (a conversation's last, padded window; the networks' cost does not
# depend on the content)
WINDOW_START_S = 7.5
WINDOW_SPEECH_S = 2.0


def load_sample() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """sample.wav as float32 samples, and its reference turns (start_s, end_s, speaker)."""
    sys.path.insert(0, str(HERE.parents[1]))
    from inference_client.audio import decode_audio
    from tests.audio import pyannote_sample

    path, turns = pyannote_sample()
    wave = np.asarray(decode_audio(path), np.float64)
    # the recording peaks at ~0.1: bring it to PEAK (a louder microphone), so 3 decimals keep ~10 bits
    return (wave * (PEAK / np.abs(wave).max())).astype(np.float32), turns


def rounded(x: np.ndarray) -> list[float | int]:
    """Samples as JSON numbers with DECIMALS digits; exact zeros as 0 (short)."""
    r = np.round(np.asarray(x, np.float64), DECIMALS)
    return [0 if v == 0 else float(v) for v in r.tolist()]


def cut(wave: np.ndarray, start_s: float, seconds: float) -> np.ndarray:
    a = int(round(start_s * SAMPLE_RATE))
    return wave[a : a + int(round(seconds * SAMPLE_RATE))]


def tensor(values: list[Any], shape: list[int]) -> dict[str, Any]:
    return {"content": values, "shape": shape}


def asr(wave: np.ndarray) -> dict[str, Any]:
    data = []
    for start, seconds, language, itn in ASR_ENTRIES:
        x = cut(wave, start, seconds)
        data.append(
            {
                "WAVEFORM": tensor(rounded(x), [len(x)]),
                "LANGUAGE": tensor([language], [1]),
                "USE_ITN": tensor([itn], [1]),
            }
        )
    return {"data": data}


def vad(wave: np.ndarray) -> dict[str, Any]:
    data = []
    for start, seconds, silence in VAD_ENTRIES:
        x = cut(wave, start, seconds)
        entry: dict[str, Any] = {"WAVEFORM": tensor(rounded(x), [len(x)])}
        if silence is not None:
            entry["MAX_END_SILENCE_MS"] = tensor([silence], [1])
        data.append(entry)
    return {"data": data}


def vad_stream(wave: np.ndarray) -> dict[str, Any]:
    """One list of steps per sequence; perf_analyzer sets START/END/CORRID itself."""
    sequences = []
    for start, seconds, chunk_ms, silence in STREAM_ENTRIES:
        x = cut(wave, start, seconds)
        step = chunk_ms * SAMPLE_RATE // 1000
        steps = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            steps.append(
                {
                    "AUDIO_CHUNK": tensor(rounded(chunk), [len(chunk)]),
                    "MAX_END_SILENCE_MS": tensor([silence], [1]),
                }
            )
        sequences.append(steps)
    return {"data": sequences}


def window(wave: np.ndarray) -> np.ndarray:
    w = np.zeros(WINDOW, np.float32)
    speech = cut(wave, WINDOW_START_S, WINDOW_SPEECH_S)
    w[: len(speech)] = speech
    return w


def segmentation(wave: np.ndarray) -> dict[str, Any]:
    return {"data": [{"WAVEFORM": tensor(rounded(window(wave)), [1, WINDOW])}]}


def masks(turns: list[tuple[float, float, str]]) -> np.ndarray:
    """[S, 589] activity of the window's speakers (from the reference turns), S = those speaking in
    its speech part."""
    end = WINDOW_START_S + WINDOW_SPEECH_S
    times = WINDOW_START_S + (np.arange(FRAMES) + 0.5) * (10.0 / FRAMES)
    speakers = sorted({s for a, b, s in turns if a < end and b > WINDOW_START_S})
    rows = []
    for spk in speakers:
        active = np.zeros(FRAMES, np.float32)
        for a, b, s in turns:
            if s == spk:
                active[(times >= a) & (times < min(b, end))] = 1
        rows.append(active)
    return np.stack(rows)


def speaker_embedding(wave: np.ndarray, turns: list[tuple[float, float, str]]) -> dict[str, Any]:
    """The window with every speaker's mask (S = 2; MASKS is ragged, so its shape is given). One
    request only: a second 10 s window would take the files past 2 MB."""
    m = masks(turns)
    return {
        "data": [
            {
                "WAVEFORM": tensor(rounded(window(wave)), [1, WINDOW]),
                "MASKS": tensor([int(v) for v in m.ravel()], list(m.shape)),
            }
        ]
    }


def build() -> dict[str, dict[str, Any]]:
    wave, turns = load_sample()
    return {
        "asr": asr(wave),
        "vad": vad(wave),
        "vad_stream": vad_stream(wave),
        "segmentation": segmentation(wave),
        "speaker_embedding": speaker_embedding(wave, turns),
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="folder of the JSON files (default: here)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a file differs from what it would be")
    args = ap.parse_args(argv)
    stale = []
    for model, doc in build().items():
        path = args.out / f"{model}.json"
        text = dumps(doc)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
            continue
        path.write_text(text)
        print(f"{path}: {len(text) / 1e6:.2f} MB")
    if stale:
        print(f"stale: {', '.join(stale)} (run python -m bench.perf_analyzer.make_inputs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
