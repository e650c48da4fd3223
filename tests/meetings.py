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
