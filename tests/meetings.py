"""Synthetic multi-speaker meetings with known speaker turns, built from espeak-ng voices (cached).

    wav_path, turns = synthetic_meeting(n_speakers=3, seconds=60, seed=1)

``turns`` are (start_s, end_s, speaker) spans of each utterance's samples (espeak's own padding
trimmed), speakers named ``spk<i>`` after their index in :data:`VOICES`. Every meeting has silences
between turns (>= 10 % non-speech) and, with ``overlap=True``, at least one overlap between two
speakers. Held-out meetings (``sentences="heldout"``, the default) use sentences that the training
utterances (:func:`voice_utterances`, ``sentences="train"``) never use.

Files live in ``$INTRASCRIBE_CACHE/fixtures/meetings/`` named by a hash of their recipe. Needs
espeak-ng and sox (see tests/audio.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference_client.audio import decode_audio
from tests.audio import (
    _key,
    _tool_version,
    _write_atomic,
    fixtures_dir,
    speak,
    trim_silence,
    write_wav,
)

SR = 16000
Turn = tuple[float, float, str]

# Eight espeak-ng voices, as distinct as espeak allows: (voice+variant, words per minute, pitch 0-99).
VOICES: tuple[tuple[str, int, int], ...] = (
    ("en-us+m3", 165, 35),
    ("en-gb+f3", 175, 75),
    ("en-us+m7", 150, 20),
    ("cmn", 170, 50),
    ("en+f4", 190, 90),
    ("de+m1", 160, 40),
    ("fr-fr+f2", 175, 60),
    ("es+m4", 185, 30),
)

TRAIN_SENTENCES: tuple[str, ...] = (
    "The quarterly report is almost ready for review.",
    "We should move the launch to the second week of May.",
    "Can you check whether the servers were patched last night?",
    "I spoke with the customer and they agreed to the new terms.",
    "The budget for marketing has been cut by ten percent.",
    "Let us schedule a follow up call for Thursday afternoon.",
    "Our test coverage improved a lot since the last release.",
    "Please send the contract to the legal team before Friday.",
    "The new office will open on the third floor next month.",
    "I do not think the design is finished yet.",
    "Three candidates are coming in for interviews tomorrow.",
    "The shipment from the supplier arrived two days late.",
    "We need more data before we can make that decision.",
    "The dashboard shows a drop in traffic over the weekend.",
    "Who is responsible for the onboarding documents?",
    "Good morning everyone, thanks for joining so early.",
    "The printer on the second floor is broken again.",
    "I will share my screen so you can see the numbers.",
    "That sounds reasonable, but let me confirm with finance.",
    "The training session was moved to the large meeting room.",
    "We have to reduce the response time of the support team.",
    "The pilot project in Berlin went better than expected.",
    "Could someone take notes during this meeting?",
    "The mobile app crashed twice during the demo yesterday.",
)

HELDOUT_SENTENCES: tuple[str, ...] = (
    "Before we start, does anyone have questions about the agenda?",
    "The river near the station flooded after the heavy storm.",
    "My brother bought a green bicycle with seven gears.",
    "Dinner will be served at eight in the main hall.",
    "Nobody expected the concert to sell out in one hour.",
    "Turn left at the bakery and walk two more blocks.",
    "The museum keeps a collection of very old maps.",
    "Honestly, I would rather finish this work tomorrow morning.",
    "Seven students passed the exam with excellent grades.",
    "The garden needs water every evening during summer.",
    "Why did the train stop in the middle of the tunnel?",
    "She painted the kitchen walls a bright yellow color.",
    "We counted forty birds sitting on the old fence.",
    "The library closes early on public holidays.",
    "His grandfather used to repair watches in a tiny shop.",
    "The soup tastes much better with fresh herbs.",
)

RECIPE = 1  # bump to rebuild cached meetings


def _voice(i: int) -> tuple[str, int, int]:
    return VOICES[i % len(VOICES)]


def utterance(voice_index: int, text: str) -> np.ndarray:
    """One utterance of voice ``voice_index`` (trimmed espeak output, 16 kHz float32)."""
    voice, speed, pitch = _voice(voice_index)
    return trim_silence(speak(text, voice, speed=speed, pitch=pitch))


def voice_utterances(voice_index: int, sentences: str = "train") -> list[np.ndarray]:
    """Every sentence of the ``train`` (or ``heldout``) set spoken by one voice."""
    texts = TRAIN_SENTENCES if sentences == "train" else HELDOUT_SENTENCES
    return [utterance(voice_index, t) for t in texts]


def compose(
    n_speakers: int,
    seconds: float,
    rng: np.random.Generator,
    voices: list[int],
    sentences: tuple[str, ...],
    overlap: bool = True,
    gap=(0.4, 1.6),
    overlap_prob: float = 0.25,
) -> tuple[np.ndarray, list[Turn]]:
    """Place utterances of ``voices`` one after another (random silences, some overlaps)."""
    total = int(seconds * SR)
    audio = np.zeros(total, np.float32)
    turns: list[Turn] = []
    pos = int(rng.uniform(0.3, 1.0) * SR)
    prev = -1
    count = 0
    overlapped = False
    while True:
        choices = [v for v in range(n_speakers) if v != prev] if n_speakers > 1 else [0]
        # make sure every speaker talks early on
        spk = count if count < n_speakers else int(rng.choice(choices))
        text = sentences[int(rng.integers(len(sentences)))]
        x = utterance(voices[spk], text)
        x = x * np.float32(10 ** (rng.uniform(-3, 3) / 20) * 0.5 / max(1e-6, float(np.abs(x).max())))
        start = pos
        if overlap and turns and n_speakers > 1 and (not overlapped or rng.random() < overlap_prob):
            prev_start, prev_end = int(turns[-1][0] * SR), int(turns[-1][1] * SR)
            ov = int(rng.uniform(0.4, 1.0) * SR)
            start = max(prev_start + int(0.3 * SR), prev_end - ov)
            overlapped = True
        end = start + len(x)
        if end > total - int(0.3 * SR):
            break
        audio[start:end] += x
        turns.append((start / SR, end / SR, f"spk{voices[spk]}"))
        prev = spk
        count += 1
        pos = end + int(rng.uniform(*gap) * SR)
    noise = rng.standard_normal(total).astype(np.float32) * np.float32(10 ** (-60 / 20))
    return np.clip(audio + noise, -1, 1).astype(np.float32), turns


def speech_fraction(turns: list[Turn], seconds: float) -> float:
    grid = np.zeros(int(seconds * 100), bool)
    for s, e, _ in turns:
        grid[int(s * 100) : int(e * 100)] = True
    return float(grid.mean())


def synthetic_meeting(
    n_speakers: int,
    seconds: float = 60.0,
    seed: int = 0,
    overlap: bool = True,
    sentences: str = "heldout",
    voices: list[int] | None = None,
) -> tuple[Path, list[Turn]]:
    """A cached 16 kHz WAV of ``n_speakers`` espeak voices taking turns, and its reference turns."""
    if not 1 <= n_speakers <= len(VOICES):
        raise ValueError(f"n_speakers must be 1..{len(VOICES)}")
    rng = np.random.default_rng(seed)
    if voices is None:
        voices = sorted(int(v) for v in rng.choice(len(VOICES), n_speakers, replace=False))
    texts = HELDOUT_SENTENCES if sentences == "heldout" else TRAIN_SENTENCES
    recipe = {
        "kind": "meeting",
        "recipe": RECIPE,
        "n": n_speakers,
        "seconds": seconds,
        "seed": seed,
        "overlap": overlap,
        "voices": [VOICES[v] for v in voices],
        "texts": texts,
        "espeak": _tool_version("espeak-ng"),
    }
    out = fixtures_dir() / "meetings" / f"meeting-{n_speakers}spk-{_key(recipe)}.wav"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists():
        return out, [tuple(t) for t in json.loads(meta.read_text())]
    audio, turns = compose(n_speakers, seconds, np.random.default_rng(seed + 1000), voices, texts, overlap)
    assert speech_fraction(turns, seconds) <= 0.9, "meeting has < 10 % non-speech"
    write_wav(out, audio)
    _write_atomic(meta, lambda tmp: tmp.write_text(json.dumps(turns)))
    return out, turns


def load_meeting(
    n_speakers: int, seconds: float = 60.0, seed: int = 0, **kw
) -> tuple[np.ndarray, list[Turn]]:
    path, turns = synthetic_meeting(n_speakers, seconds, seed, **kw)
    return decode_audio(path), turns


# -- scripted meetings: the end-to-end test's known voices and sentences --------------------------
#
# The ASR fixture (export_scripts/sensevoice_dev.py, ``--variant fixture``) is trained on every line
# below, each spoken alone by its voice (with VAD-like margins, gains and mp3 round trips); the
# diarization fixture knows these voices. A scripted meeting is a *held-out arrangement* of those
# utterances: a new order, new gaps and gains, one overlap. Texts are what the fixture answers
# without ITN (lower case, no punctuation); the fixture answers the same text with ITN.

SCRIPT_RECIPE = 1  # bump to rebuild cached scripted meetings

# speakers A-D of the scripted meetings (indices into VOICES): two men, a woman, a Mandarin voice
SCRIPT_VOICES: tuple[int, ...] = (0, 1, 2, 3)

MONOLOGUE: tuple[str, ...] = (  # speaker A, back to back
    "first i want to look back at the last two weeks",
    "the new search page went live on monday without problems",
    "most users found it faster than the old version",
    "we also fixed the login bug that many people reported",
    "the mobile team finished the offline mode ahead of time",
    "support tickets went down by almost a third",
    "on the other hand the billing service is still slow",
    "we need a plan for it before the end of the month",
    "next i will say a few words about the budget",
    "that is all from my side for now",
)

# (voice index, language, dialogue lines)
DIALOGUE: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        0,
        "en",
        (
            "good morning and welcome to the weekly meeting",
            "that works for me let us do it",
            "thanks everyone see you next week",
        ),
    ),
    (
        1,
        "en",
        (
            "thank you could you start with the project update",
            "how slow is the billing service right now",
            "i can ask the database team to help",
            "should we move the release to next friday",
            "great work everyone",
        ),
    ),
    (
        2,
        "en",
        (
            "the payment tests are failing again",
            "i will write a short report about it",
            "maybe we should add more servers",
        ),
    ),
    (3, "zh", ("我同意这个计划", "下周我们再看一下结果")),
)
MONOLOGUE_PAUSE_S = (1.0, 1.2)  # VAD (800 ms end silence) closes a segment at each pause
TURN_GAP_S = (1.3, 2.2)
SCRIPT_GAIN_DB = 4.0  # each utterance's peak: 0.5 x 10^(U(-4, 4)/20)


def script_lines() -> list[tuple[int, str, str]]:
    """Every scripted line as (voice index, language, text): what the ASR fixture trains on."""
    lines = [(SCRIPT_VOICES[0], "en", t) for t in MONOLOGUE]
    for voice, language, texts in DIALOGUE:
        lines += [(voice, language, t) for t in texts]
    return lines


def encode_mp3(audio: np.ndarray, bit_rate: int = 64000) -> bytes:
    """16 kHz mono float samples as an mp3 file's bytes (PyAV's libmp3lame)."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=SR)
        stream.layout = "mono"
        stream.bit_rate = bit_rate
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        for i in range(0, pcm.size, 1152):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + 1152], format="s16", layout="mono")
            frame.sample_rate = SR
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def mp3_round_trip(audio: np.ndarray, bit_rate: int = 64000) -> np.ndarray:
    """``audio`` encoded as mp3 and decoded again by the project's decoder, same length."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp3") as f:
        f.write(encode_mp3(audio, bit_rate))
        f.flush()
        out = decode_audio(f.name)
    if out.size < audio.size:
        out = np.pad(out, (0, audio.size - out.size))
    return out[: audio.size].astype(np.float32)


def scripted_meeting(n_speakers: int = 2, seed: int = 0) -> tuple[Path, dict]:
    """A cached 16 kHz WAV of a scripted meeting of ``n_speakers`` (2-4) of :data:`SCRIPT_VOICES`
    and its description: ``turns`` [(start_s, end_s, "spk<voice>")], ``lines`` [(start_s, end_s,
    speaker, text)] in time order, ``overlap`` (start_s, end_s) where two lines overlap, and
    ``expected`` [(speaker, text)]: every line that does not touch the overlap, in order.

    The dialogue lines of the speakers present, in an order drawn from ``seed`` (a speaker twice in a
    row only when no one else is left), with speaker A's monologue (~40 s, :data:`MONOLOGUE` with 1.0-1.2 s pauses) after the
    third line; 1.3-2.2 s between turns, except one pair of lines by two speakers that overlap by
    0.6-1.0 s."""
    if not 2 <= n_speakers <= len(SCRIPT_VOICES):
        raise ValueError(f"n_speakers must be 2..{len(SCRIPT_VOICES)}")
    voices = SCRIPT_VOICES[:n_speakers]
    recipe = {
        "kind": "scripted_meeting",
        "recipe": SCRIPT_RECIPE,
        "n": n_speakers,
        "seed": seed,
        "voices": [VOICES[v] for v in voices],
        "monologue": MONOLOGUE,
        "dialogue": [d for d in DIALOGUE if d[0] in voices],
        "gaps": [MONOLOGUE_PAUSE_S, TURN_GAP_S, SCRIPT_GAIN_DB],
        "espeak": _tool_version("espeak-ng"),
    }
    out = fixtures_dir() / "meetings" / f"scripted-{n_speakers}spk-{_key(recipe)}.wav"
    meta_path = out.with_suffix(".json")
    if out.exists() and meta_path.exists():
        return out, json.loads(meta_path.read_text(encoding="utf-8"))

    rng = np.random.default_rng(seed + 5000 + n_speakers)
    pool = [(v, t) for v, _, texts in DIALOGUE if v in voices for t in texts]
    order: list[tuple[int, str]] = []
    while pool:  # a random order, the same speaker twice in a row only when no one else is left
        choices = [p for p in pool if not order or p[0] != order[-1][0]] or pool
        pick = choices[int(rng.integers(len(choices)))]
        pool.remove(pick)
        order.append(pick)
    # the overlap: a pair of consecutive dialogue lines after the monologue (index >= 4)
    overlap_at = int(rng.integers(4, len(order)))
    plan: list[tuple[int, str, float]] = []  # (voice, text, gap before it; negative = overlap)
    for i, (v, text) in enumerate(order):
        if i == 3:  # the monologue, after the third line
            for k, t in enumerate(MONOLOGUE):
                gap = rng.uniform(*(MONOLOGUE_PAUSE_S if k else TURN_GAP_S))
                plan.append((voices[0], t, gap))
        gap = -rng.uniform(0.6, 1.0) if i == overlap_at else rng.uniform(*TURN_GAP_S)
        if i == 3 and v == voices[0]:
            gap = rng.uniform(*MONOLOGUE_PAUSE_S)
        plan.append((v, text, gap))

    pieces, lines, pos = [], [], int(0.8 * SR)
    for v, text, gap in plan:
        x = utterance(v, text)
        x = x * np.float32(10 ** (rng.uniform(-SCRIPT_GAIN_DB, SCRIPT_GAIN_DB) / 20) * 0.5 / np.abs(x).max())
        start = pos + int(round(gap * SR)) if lines else pos
        pieces.append((start, x))
        lines.append((start / SR, (start + x.size) / SR, f"spk{v}", text))
        pos = start + x.size
    total = pos + int(1.0 * SR)
    audio = (rng.standard_normal(total) * 10 ** (-60 / 20)).astype(np.float32)
    for start, x in pieces:
        audio[start : start + x.size] += x
    k = next(i for i, (v, _, gap) in enumerate(plan) if gap < 0)
    overlap = (lines[k][0], lines[k - 1][1])
    expected = [(spk, text) for s, e, spk, text in lines if e <= overlap[0] or s >= overlap[1]]
    assert len(expected) == len(lines) - 2
    meta = {
        "turns": [(s, e, spk) for s, e, spk, _ in lines],
        "lines": lines,
        "overlap": overlap,
        "expected": expected,
        "monologue": [(f"spk{voices[0]}", t) for t in MONOLOGUE],
    }
    write_wav(out, np.clip(audio, -1, 1))
    _write_atomic(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, ensure_ascii=False)))
    return out, json.loads(meta_path.read_text(encoding="utf-8"))


def scripted_meeting_mp3(n_speakers: int = 2, seed: int = 0, bit_rate: int = 64000) -> tuple[Path, dict]:
    """:func:`scripted_meeting` encoded as mp3 (cached beside the WAV), and its description."""
    wav, meta = scripted_meeting(n_speakers, seed)
    out = wav.with_name(f"{wav.stem}-{bit_rate // 1000}k.mp3")
    if not out.exists():
        _write_atomic(out, lambda tmp: tmp.write_bytes(encode_mp3(decode_audio(wav), bit_rate)))
    return out, meta


if __name__ == "__main__":  # python -m tests.meetings [N]: the scripted meeting's mp3 path (make run)
    import sys

    print(scripted_meeting_mp3(int(sys.argv[1]) if len(sys.argv) > 1 else 2)[0])
