"""The transcript record: one :class:`Word`, one :class:`Segment`, one :class:`Transcript`, used from
ASR output through speaker attribution to storage and exports.

Time unit: **seconds, as float**, everywhere in this module (``start``/``end`` of words and segments,
``duration`` of a transcript). Why seconds and not the integer milliseconds ASR emits:
faster-whisper's ``Segment``/``Word`` and OpenAI's transcription API (``verbose_json``, diarized
output) speak float seconds, the original Intrascribe stored ``start_time``/``end_time`` in seconds,
diarization turns (:class:`speechlib.diarization.turns.SpeakerTurn`) are seconds, and subtitles are
written from seconds. Converting is lossless: ASR's integer ms become ``ms / 1000`` (:func:`ms_to_s`),
which is the float nearest the exact decimal (``1234 -> 1.234``; its ``repr`` and JSON text are that
decimal, and :func:`s_to_ms` gives the ms back). Offsets (a chunk's start in a long recording) are
added in integer ms *before* that division, so no float error accumulates over hours.

Building from ASR (:func:`segment_from_asr`) takes plain values — sentencepiece pieces and their
``(start_ms, end_ms)`` — never client objects (``speechlib`` does not import ``inference_client``).
Pieces become words with :func:`speechlib.ctc.word_times` (FunASR's merge: each CJK character and
punctuation mark is a word of its own). A word's end is capped at ``start + max_word_s``
(:data:`MAX_WORD_S`, 1.5 s; faster-whisper caps words at 2x their median duration, at most 1.4 s) so
that a word never stretches over a long silence: an over-long CTC span would otherwise carry the
word — and its speaker vote — into someone else's turn.

Speaker attribution (:func:`attribute_speakers`) gives every word a speaker with
:func:`speechlib.diarization.turns.assign_speakers` (largest overlap with the exclusive turns,
nearest-turn fallback) and splits a segment wherever the speaker changes between words: a user
expects a new subtitle line when someone else speaks. Splits happen only where a line may break
(:func:`line_breaks`: after whitespace, or next to a CJK/kana character), so word fragments and
punctuation stay with the word before them (``don`` ``'`` ``t``, ``hello`` ``,``). A segment's text is
never rebuilt from its words: split parts are slices of the original text, so CJK text stays without
spaces and ITN punctuation is kept exactly.

Stored shape (:meth:`Segment.to_dict`): the original's ``transcriptions.segments`` elements
(``index``, ``speaker``, ``start_time``, ``end_time``, ``text``, ``confidence_score``, ``is_final``)
plus ``language``, ``emotion``, ``event`` and ``words`` (each ``{"word", "start", "end", "speaker",
"probability"}``, OpenAI's and faster-whisper's word shape plus the speaker). ``index`` is 1-based,
as the original wrote it.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np

from speechlib.ctc import word_times
from speechlib.diarization.turns import SpeakerTurn, assign_speakers
from speechlib.tokens import SPACE, detokenize

__all__ = [
    "MAX_WORD_S",
    "NO_SPEECH",
    "Segment",
    "Transcript",
    "Word",
    "attribute_speakers",
    "dominant_language",
    "join_texts",
    "line_breaks",
    "ms_to_s",
    "rename_speaker",
    "s_to_ms",
    "segment_from_asr",
    "split_segment",
    "word_spans",
    "words_from_tokens",
]

MAX_WORD_S = 1.5
"""Longest a word may last, in seconds: a word's end is capped at ``start + MAX_WORD_S``."""

NO_SPEECH = "nospeech"
"""SenseVoice's language result for audio without speech; never a transcript's language."""


def ms_to_s(ms: int) -> float:
    """Integer milliseconds -> float seconds, the double nearest the exact value (``1234 -> 1.234``)."""
    return int(ms) / 1000


def s_to_ms(seconds: float) -> int:
    """Float seconds -> integer milliseconds, rounded to the nearest (inverse of :func:`ms_to_s`)."""
    return round(float(seconds) * 1000)


def _check_times(start: float, end: float, what: str) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{what} times must be finite seconds, got start={start!r}, end={end!r}")
    if end < start:
        raise ValueError(f"{what} ends before it starts: start={start!r} s, end={end!r} s")


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True)
class Word:
    """One word: ``[start, end]`` in seconds from the start of the recording, its text (no
    surrounding spaces), the speaker label (``SPEAKER_00``, or None before diarization) and the
    recognizer's probability in [0, 1] (None when it gives none; SenseVoice does not yet)."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    probability: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))
        _check_times(self.start, self.end, f"word {self.text!r}")

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """``{"word", "start", "end", "speaker", "probability"}``, times in seconds."""
        return {
            "word": self.text,
            "start": self.start,
            "end": self.end,
            "speaker": self.speaker,
            "probability": self.probability,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Word:
        """Inverse of :meth:`to_dict` (``speaker`` and ``probability`` may be missing)."""
        probability = data.get("probability")
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data["word"]),
            speaker=_optional_str(data.get("speaker")),
            probability=None if probability is None else float(probability),
        )


@dataclass(frozen=True)
class Segment:
    """One line of the transcript: ``[start, end]`` in seconds from the start of the recording, its
    text exactly as recognized (or edited), the speaker, SenseVoice's language (``zh``, ``en``, ``yue``,
    ``ja``, ``ko``), emotion (``NEUTRAL``, ...) and audio event (``Speech``, ``BGM``, ...) tags (None
    when absent), its words (may be empty: the text is what counts), a confidence in [0, 1] (None when
    unknown) and whether it is final (live interim results are not).

    ``index`` is the 1-based position in its transcript (:meth:`Transcript.from_segments` numbers
    them; stored data keeps its own, gaps included)."""

    index: int
    start: float
    end: float
    text: str
    speaker: str | None = None
    language: str | None = None
    emotion: str | None = None
    event: str | None = None
    words: tuple[Word, ...] = field(default=())
    confidence: float | None = None
    is_final: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))
        object.__setattr__(self, "words", tuple(self.words))
        _check_times(self.start, self.end, f"segment {self.index}")

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """The stored shape (module docstring): the original's keys, then ours; times in seconds."""
        return {
            "index": self.index,
            "speaker": self.speaker,
            "start_time": self.start,
            "end_time": self.end,
            "text": self.text,
            "confidence_score": self.confidence,
            "is_final": self.is_final,
            "language": self.language,
            "emotion": self.emotion,
            "event": self.event,
            "words": [w.to_dict() for w in self.words],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_index: int = 0) -> Segment:
        """Inverse of :meth:`to_dict`. Also reads the original's rows, which lack our keys: missing
        ``words`` -> none, ``language``/``emotion``/``event``/``confidence_score`` -> None,
        ``is_final`` -> True, ``index`` -> ``default_index``. ``start_time``/``end_time`` are
        required (the original's live rows had none; ours always have them)."""
        if "start_time" not in data or "end_time" not in data:
            raise ValueError(
                f"segment {data.get('index', default_index)} has no start_time/end_time (seconds): "
                f"keys are {sorted(data)}"
            )
        confidence = data.get("confidence_score")
        return cls(
            index=int(data.get("index", default_index)),
            start=float(data["start_time"]),
            end=float(data["end_time"]),
            text=str(data.get("text") or ""),
            speaker=_optional_str(data.get("speaker")),
            language=_optional_str(data.get("language")),
            emotion=_optional_str(data.get("emotion")),
            event=_optional_str(data.get("event")),
            words=tuple(Word.from_dict(w) for w in data.get("words") or ()),
            confidence=None if confidence is None else float(confidence),
            is_final=bool(data.get("is_final", True)),
        )


@dataclass(frozen=True)
class Transcript:
    """A recording's segments in time order, its language (the dominant one, SenseVoice's code, None
    when nothing was said) and the audio's duration in seconds (None when unknown)."""

    segments: tuple[Segment, ...] = ()
    language: str | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments))
        if self.duration is not None:
            object.__setattr__(self, "duration", float(self.duration))

    @classmethod
    def from_segments(
        cls, segments: Iterable[Segment], *, language: str | None = None, duration: float | None = None
    ) -> Transcript:
        """A new transcript: segments with blank text dropped, sorted by time (stably), numbered
        1..n; ``language`` defaults to :func:`dominant_language` of the segments."""
        kept = sorted((s for s in segments if s.text.strip()), key=lambda s: (s.start, s.end))
        numbered = tuple(replace(s, index=i) for i, s in enumerate(kept, start=1))
        if language is None:
            language = dominant_language(numbered)
        return cls(numbered, language, duration)

    @property
    def text(self) -> str:
        """The whole text (:func:`join_texts` of the segments' texts): the original's ``content``."""
        return join_texts(s.text for s in self.segments)

    @property
    def speakers(self) -> list[str]:
        """Segment speakers in order of first appearance."""
        return list(dict.fromkeys(s.speaker for s in self.segments if s.speaker is not None))

    @property
    def end(self) -> float:
        """The duration if known, else the end of the last segment (0.0 when empty); seconds."""
        if self.duration is not None:
            return self.duration
        return max((s.end for s in self.segments), default=0.0)

    def to_segments_json(self) -> list[dict[str, Any]]:
        """The stored ``transcriptions.segments`` list (:meth:`Segment.to_dict` of each)."""
        return [s.to_dict() for s in self.segments]

    @classmethod
    def from_segments_json(
        cls,
        items: Iterable[Mapping[str, Any]],
        *,
        language: str | None = None,
        duration: float | None = None,
    ) -> Transcript:
        """Inverse of :meth:`to_segments_json`; keeps the stored order and indexes as they are."""
        segments = tuple(Segment.from_dict(d, default_index=i) for i, d in enumerate(items, start=1))
        return cls(segments, language, duration)


# --- text ----------------------------------------------------------------------------------------


def _no_space_script(ch: str) -> bool:
    """Whether ``ch`` belongs to a script written without spaces between words (CJK ideographs,
    kana, full-width forms and CJK punctuation; Hangul is wide but uses spaces)."""
    return unicodedata.east_asian_width(ch) in ("W", "F") and not unicodedata.name(ch, "").startswith(
        "HANGUL"
    )


def join_texts(texts: Iterable[str]) -> str:
    """Join texts with a space, or with nothing between two CJK/kana characters (``你好。`` +
    ``我们`` -> ``你好。我们``; ``Hello.`` + ``OK`` -> ``Hello. OK``). Blank texts are skipped."""
    out = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if out and not (_no_space_script(out[-1]) and _no_space_script(text[0])):
            out += " "
        out += text
    return out


def word_spans(text: str, words: Sequence[Word]) -> list[tuple[int, int]] | None:
    """The ``(start, end)`` character span of each word in ``text``, found in order, or None when the
    words do not spell the text (anything but whitespace around or between them, a missing or empty
    word): then the text was edited or did not come from these words, and must not be split."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for w in words:
        if not w.text:
            return None
        i = text.find(w.text, pos)
        if i < 0 or text[pos:i].strip():
            return None
        spans.append((i, i + len(w.text)))
        pos = i + len(w.text)
    if text[pos:].strip():
        return None
    return spans


def _starts_line(ch: str) -> bool:
    """Letters, digits and opening brackets/quotes may begin a line; closing punctuation may not."""
    return unicodedata.category(ch)[0] in ("L", "N") or unicodedata.category(ch) in ("Ps", "Pi")


def line_breaks(segment: Segment) -> list[int] | None:
    """Word indices ``i`` (``0 < i < len(words)``) before which the segment may be cut into two
    lines, or None when its words do not spell its text (:func:`word_spans`).

    A cut before word ``i`` is allowed when that word starts with a letter, digit or opening
    bracket/quote, and either whitespace separates it from word ``i-1`` or one of the two characters
    at the cut is CJK/kana (written without spaces). So ``don`` ``'`` ``t``, ``3`` ``.`` ``14`` and
    ``hello`` ``,`` never come apart, while ``你`` ``好`` may."""
    words = segment.words
    spans = word_spans(segment.text, words)
    if spans is None:
        return None
    out: list[int] = []
    for i in range(1, len(words)):
        prev_end, next_start = spans[i - 1][1], spans[i][0]
        prev_ch, next_ch = segment.text[prev_end - 1], segment.text[next_start]
        if not _starts_line(next_ch):
            continue
        gap = segment.text[prev_end:next_start]
        if gap or _no_space_script(prev_ch) or _no_space_script(next_ch):
            out.append(i)
    return out


def split_segment(segment: Segment, starts: Sequence[int]) -> list[Segment]:
    """Cut ``segment`` before each word index in ``starts`` (increasing, each in ``1..len(words)-1``).

    Each part's text is the slice of the original text from its first word to the next part's first
    word, stripped (joining the parts with the whitespace that was between them gives the text
    back exactly); its words are its slice of the words. The first part starts at the segment's
    start, the last ends at the segment's end; inner boundaries are the words' own times (seconds).
    Every other field (speaker, index, language, ...) is copied. Raises ``ValueError`` when the
    words do not spell the text (:func:`word_spans`) or ``starts`` is not valid."""
    starts = list(starts)
    if not starts:
        return [segment]
    words = segment.words
    if any(not 0 < b < len(words) for b in starts) or any(a >= b for a, b in pairwise(starts)):
        raise ValueError(f"cut points {starts} must increase within 1..{len(words) - 1}")
    spans = word_spans(segment.text, words)
    if spans is None:
        raise ValueError(f"segment {segment.index}: its words do not spell its text, so it cannot be split")
    bounds = [0, *starts, len(words)]
    parts: list[Segment] = []
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        first, last = k == 0, hi == len(words)
        c0 = 0 if first else spans[lo][0]
        c1 = len(segment.text) if last else spans[hi][0]
        start = segment.start if first else words[lo].start
        end = segment.end if last else words[hi - 1].end
        parts.append(
            replace(
                segment,
                start=start,
                end=max(end, start),
                text=segment.text[c0:c1].strip(),
                words=words[lo:hi],
            )
        )
    return parts


# --- building from ASR ---------------------------------------------------------------------------


def _is_byte_piece(piece: str) -> bool:
    return len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")


def _merge_byte_pieces(pieces: Sequence[str], times: np.ndarray) -> tuple[list[str], list[list[int]]]:
    """Runs of sentencepiece byte pieces (``<0xE4>`` ...) become one piece, the text they decode to
    (as :func:`speechlib.tokens.detokenize` does), spanning the run's times."""
    out_pieces: list[str] = []
    out_times: list[list[int]] = []
    i = 0
    while i < len(pieces):
        j = i
        while j < len(pieces) and _is_byte_piece(pieces[j]):
            j += 1
        if j > i:
            out_pieces.append(detokenize(pieces[i:j]))
            out_times.append([int(times[i, 0]), int(times[j - 1, 1])])
            i = j
        else:
            out_pieces.append(pieces[i])
            out_times.append([int(times[i, 0]), int(times[i, 1])])
            i += 1
    return out_pieces, out_times


def words_from_tokens(
    pieces: Sequence[str],
    times_ms: Any,
    *,
    offset_ms: int = 0,
    max_word_s: float = MAX_WORD_S,
) -> tuple[Word, ...]:
    """Words (seconds) from sentencepiece ``pieces`` and their ``times_ms`` (``[N, 2]`` integer
    ``(start_ms, end_ms)``, e.g. ``asr``'s ``TOKEN_TIMES_MS``), merged by
    :func:`speechlib.ctc.word_times`; ``offset_ms`` is added to every time (in ms, before converting).

    Before merging, byte pieces are decoded and the first piece loses its leading ``▁`` (FunASR keeps
    it, so ``▁hel`` ``lo`` would come out as two words). A word's end is at least its start and at most
    ``start + max_word_s``. Words keep the pieces' order, overlapping times included."""
    if not max_word_s > 0:
        raise ValueError(f"max_word_s must be a positive number of seconds, got {max_word_s!r}")
    pieces = [str(p) for p in pieces]
    times = np.asarray(times_ms, dtype=np.int64).reshape(-1, 2) if len(pieces) else np.zeros((0, 2), np.int64)
    if times.shape[0] != len(pieces):
        raise ValueError(f"{len(pieces)} pieces but {times.shape[0]} (start_ms, end_ms) pairs")
    merged, merged_times = _merge_byte_pieces(pieces, times)
    if merged and merged[0].startswith(SPACE) and len(merged[0]) > 1:
        merged[0] = merged[0][1:]
    texts, stamps = word_times(merged, np.asarray(merged_times, dtype=np.int64).reshape(-1, 2))
    max_word_ms = round(max_word_s * 1000)
    words: list[Word] = []
    for text, (start, end) in zip(texts, stamps, strict=True):
        if not text:
            continue
        start_ms = int(start) + int(offset_ms)
        end_ms = min(max(int(end) + int(offset_ms), start_ms), start_ms + max_word_ms)
        words.append(Word(ms_to_s(start_ms), ms_to_s(end_ms), text))
    return tuple(words)


def segment_from_asr(
    *,
    start_ms: int,
    end_ms: int,
    text: str,
    pieces: Sequence[str] = (),
    token_times_ms: Any = None,
    language: str | None = None,
    emotion: str | None = None,
    event: str | None = None,
    confidence: float | None = None,
    offset_ms: int = 0,
    max_word_s: float = MAX_WORD_S,
    index: int = 0,
) -> Segment:
    """A segment from one ASR result, all times integer ms from the start of the audio given to ASR:
    ``start_ms``/``end_ms`` the VAD segment, ``pieces`` and ``token_times_ms`` (``[N, 2]``) its tokens
    (``inference_client.asr``'s ``TranscribedSegment``: ``[t.text for t in seg.transcript.tokens]``,
    ``[(t.start_ms, t.end_ms) ...]``). ``offset_ms`` (e.g. a chunk's start) is added to every time.

    ``text`` is kept exactly (stripped); words come from :func:`words_from_tokens`. The segment spans
    the VAD segment and all its words. Empty tags (``""``) become None. Seconds in the result."""
    words = words_from_tokens(
        pieces, [] if token_times_ms is None else token_times_ms, offset_ms=offset_ms, max_word_s=max_word_s
    )
    start = ms_to_s(int(start_ms) + int(offset_ms))
    end = ms_to_s(max(int(end_ms), int(start_ms)) + int(offset_ms))
    if words:
        start = min(start, min(w.start for w in words))
        end = max(end, max(w.end for w in words))
    return Segment(
        index=index,
        start=start,
        end=end,
        text=text.strip(),
        language=_optional_str(language),
        emotion=_optional_str(emotion),
        event=_optional_str(event),
        words=words,
        confidence=confidence,
    )


def dominant_language(segments: Iterable[Segment]) -> str | None:
    """The language spoken longest (sum of segment durations, seconds) among segments with text;
    ties go to the language heard first; None when no segment has one (``nospeech`` does not count)."""
    totals: dict[str, float] = {}
    for s in segments:
        if s.language and s.language != NO_SPEECH and s.text.strip():
            totals[s.language] = totals.get(s.language, 0.0) + s.duration
    if not totals:
        return None
    return max(totals, key=lambda k: totals[k])


# --- speakers ------------------------------------------------------------------------------------


def _majority_speaker(words: Sequence[Word]) -> str | None:
    """The speaker with the most word time (seconds), then the most words; ties -> first heard."""
    time: dict[str | None, float] = {}
    count: dict[str | None, int] = {}
    for w in words:
        time[w.speaker] = time.get(w.speaker, 0.0) + w.duration
        count[w.speaker] = count.get(w.speaker, 0) + 1
    if not time:
        return None
    return max(time, key=lambda sp: (time[sp], count[sp]))


def attribute_speakers(
    transcript: Transcript, turns: Sequence[SpeakerTurn], *, split: bool = True
) -> Transcript:
    """Speakers from diarization ``turns`` (seconds; use the *exclusive* turns) for every word and
    segment.

    Each word gets :func:`~speechlib.diarization.turns.assign_speakers`' answer (largest overlap,
    nearest turn when none overlaps). With ``split`` (the default), words that cannot start a line
    (:func:`line_breaks`) join the word before them and take the speaker with most time in that
    group, and a segment is cut (:func:`split_segment`) wherever consecutive groups differ: every
    resulting segment has one speaker, the same as all its words. Segments are then renumbered 1..n.
    Without ``split``, or for a segment whose words do not spell its text (edited), the words keep
    their own speakers and the segment takes the speaker with most of its words' time. A segment
    without words gets the speaker of its own span. With no turns every speaker is None."""
    segments = transcript.segments
    word_speakers = iter(assign_speakers([w for s in segments for w in s.words], turns))
    bare_speakers = iter(assign_speakers([s for s in segments if not s.words], turns))
    out: list[Segment] = []
    for seg in segments:
        if not seg.words:
            out.append(replace(seg, speaker=next(bare_speakers)))
            continue
        words = [replace(w, speaker=next(word_speakers)) for w in seg.words]
        breaks = line_breaks(seg) if split else None
        if breaks is None:
            out.append(replace(seg, words=tuple(words), speaker=_majority_speaker(words)))
            continue
        bounds = [0, *breaks, len(words)]
        cuts: list[int] = []
        previous: str | None = None
        for lo, hi in pairwise(bounds):
            speaker = _majority_speaker(words[lo:hi])
            words[lo:hi] = [replace(w, speaker=speaker) for w in words[lo:hi]]
            if lo > 0 and speaker != previous:
                cuts.append(lo)
            previous = speaker
        whole = replace(seg, words=tuple(words))
        out += [replace(p, speaker=p.words[0].speaker) for p in split_segment(whole, cuts)]
    numbered = tuple(replace(s, index=i) for i, s in enumerate(out, start=1))
    return replace(transcript, segments=numbered)


def rename_speaker(transcript: Transcript, old: str, new: str) -> Transcript:
    """``old`` renamed to ``new`` on every segment and word (renaming onto an existing speaker merges
    the two). ``new`` is stripped, inner whitespace collapsed to single spaces. Raises
    ``LookupError`` when no segment or word has ``old``, ``ValueError`` when ``new`` is blank."""
    name = " ".join(str(new).split())
    if not name:
        raise ValueError("a speaker's new name must not be blank")
    found = any(s.speaker == old or any(w.speaker == old for w in s.words) for s in transcript.segments)
    if not found:
        raise LookupError(f"no speaker {old!r} in this transcript; speakers: {transcript.speakers}")

    def rename(label: str | None) -> str | None:
        return name if label == old else label

    segments = tuple(
        replace(
            s, speaker=rename(s.speaker), words=tuple(replace(w, speaker=rename(w.speaker)) for w in s.words)
        )
        for s in transcript.segments
    )
    return replace(transcript, segments=segments)
