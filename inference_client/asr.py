"""Speech recognition through Triton: utterances (``asr``) and short recordings (VAD -> ASR).

All audio is 16 kHz (:data:`speechlib.interfaces.SAMPLE_RATE`) mono float32 in [-1, 1]. Times are
integer milliseconds; token times are from the start of the utterance, segment (and their tokens')
times from the start of the waveform given to :meth:`ASRClient.transcribe_segments`.

    asr = ASRClient(client)
    t = await asr.transcribe(utterance, language="en", use_itn=True)   # <= 30 s
    print(t.text, t.language, t.emotion, t.event, [(k.text, k.start_ms) for k in t.tokens])

    for seg in await asr.transcribe_segments(recording):              # VAD, then ASR per segment
        print(seg.start_ms, seg.end_ms, seg.transcript.text)

Language codes: ``auto`` (detect), ``zh`` (``zh-CN``, ``cmn``), ``en`` (``en-*``), ``yue``
(``zh-HK``), ``ja``, ``ko`` (:mod:`speechlib.languages`); anything else raises ``ValueError`` before a
request is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from inference_client.client import TritonClient
from inference_client.vad import SpeechSegment, VADClient, validate_waveform
from speechlib.interfaces import ASR, SAMPLE_RATE, Transcribe
from speechlib.languages import normalize_language

__all__ = ["ASRClient", "Token", "Transcript", "TranscribedSegment"]

_ASR_OUTPUTS = [
    ASR.TEXT,
    ASR.DETECTED_LANGUAGE,
    ASR.EMOTION,
    ASR.EVENT,
    ASR.TOKENS,
    ASR.TOKEN_IDS,
    ASR.TOKEN_TIMES_MS,
    ASR.TOKEN_PROBS,
]
_TRANSCRIBE_OUTPUTS = [
    Transcribe.SEGMENTS,
    Transcribe.TEXTS,
    Transcribe.LANGUAGES,
    Transcribe.EMOTIONS,
    Transcribe.EVENTS,
]


@dataclass(frozen=True)
class Token:
    """One text piece (sentencepiece string, ``▁`` marks a word start), its time in ms and its CTC
    posterior in (0, 1] (mean over the frames of its run on the greedy path; None if not reported)."""

    text: str
    id: int
    start_ms: int
    end_ms: int
    probability: float | None = None


@dataclass(frozen=True)
class Transcript:
    """What ``asr`` says about one utterance. ``language`` is the detected (or requested) language
    (``zh``/``en``/``yue``/``ja``/``ko``/``nospeech``); ``emotion`` (e.g. ``NEUTRAL``) and ``event``
    (e.g. ``Speech``, ``BGM``) are SenseVoice's tags, ``""`` when it emitted none."""

    text: str
    language: str
    emotion: str
    event: str
    tokens: tuple[Token, ...] = ()

    def shifted(self, offset_ms: int) -> Transcript:
        """The same transcript with token times moved by ``offset_ms``."""
        tokens = tuple(
            replace(t, start_ms=t.start_ms + offset_ms, end_ms=t.end_ms + offset_ms) for t in self.tokens
        )
        return replace(self, tokens=tokens)


@dataclass(frozen=True)
class TranscribedSegment:
    """A VAD speech segment (ms from the start of the waveform) and its transcript (token times
    from the start of the waveform too; empty for the server-side ``transcribe`` model)."""

    start_ms: int
    end_ms: int
    transcript: Transcript

    @property
    def text(self) -> str:
        return self.transcript.text


def _str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _check_options(language: str | None, use_itn: bool) -> str:
    if not isinstance(use_itn, bool | np.bool_):
        raise TypeError(f"use_itn must be True or False, got {use_itn!r}")
    return normalize_language(language)


def asr_inputs(x: np.ndarray, language: str, use_itn: bool) -> dict[str, np.ndarray]:
    """The ``asr`` request tensors for one utterance (``x``: 16 kHz mono float32), unchecked."""
    return {
        ASR.WAVEFORM: x[None],
        ASR.LANGUAGE: np.array([[language.encode("utf-8")]], dtype=np.object_),
        ASR.USE_ITN: np.array([[bool(use_itn)]], dtype=bool),
    }


class ASRClient:
    """SenseVoice on Triton. ``client`` is a shared :class:`TritonClient` (it owns the request window);
    ``vad`` defaults to a :class:`VADClient` on the same client."""

    def __init__(
        self,
        client: TritonClient,
        model: str = ASR.NAME,
        vad: VADClient | None = None,
        transcribe_model: str = Transcribe.NAME,
    ):
        self.client = client
        self.model = model
        self.transcribe_model = transcribe_model
        self.vad = vad or VADClient(client)

    async def transcribe(
        self, waveform: np.ndarray, language: str = "auto", use_itn: bool = True
    ) -> Transcript:
        """Recognize one utterance of at most :data:`ASR.MAX_SECONDS` (30 s); longer audio goes
        through :meth:`transcribe_segments`.

        ``use_itn``: inverse text normalisation (punctuation, digits). Raises ``ValueError`` for an
        unsupported language, audio that is too long or too short (< 25 ms), before any request.
        """
        code = _check_options(language, use_itn)
        x = validate_waveform(waveform)
        if x.size < SAMPLE_RATE * 25 // 1000:
            raise ValueError(f"waveform holds {x.size} samples; ASR needs at least 25 ms (400 samples)")
        if x.size > ASR.MAX_SECONDS * SAMPLE_RATE:
            raise ValueError(
                f"waveform is {x.size / SAMPLE_RATE:.1f} s; asr takes at most {ASR.MAX_SECONDS:.0f} s per "
                "utterance: use transcribe_segments() to cut it with VAD first"
            )
        out = await self.client.infer(self.model, asr_inputs(x, code, use_itn), _ASR_OUTPUTS)
        pieces = [_str(p) for p in out[ASR.TOKENS].reshape(-1)]
        ids = out[ASR.TOKEN_IDS].reshape(-1)
        times = out[ASR.TOKEN_TIMES_MS].reshape(-1, 2)
        probs = out[ASR.TOKEN_PROBS].reshape(-1)
        tokens = tuple(
            Token(p, int(i), int(s), int(e), float(q))
            for p, i, (s, e), q in zip(pieces, ids, times, probs, strict=False)
        )
        return Transcript(
            text=_str(out[ASR.TEXT].reshape(-1)[0]),
            language=_str(out[ASR.DETECTED_LANGUAGE].reshape(-1)[0]),
            emotion=_str(out[ASR.EMOTION].reshape(-1)[0]),
            event=_str(out[ASR.EVENT].reshape(-1)[0]),
            tokens=tokens,
        )

    async def transcribe_many(
        self, waveforms: Iterable[np.ndarray], language: str = "auto", use_itn: bool = True
    ) -> list[Transcript]:
        """:meth:`transcribe` of many utterances, in order; the requests run concurrently through the
        client's window so Triton can batch them."""
        return list(await asyncio.gather(*(self.transcribe(w, language, use_itn) for w in waveforms)))

    async def transcribe_segments(
        self,
        waveform: np.ndarray,
        language: str = "auto",
        use_itn: bool = True,
        max_end_silence_ms: int | None = None,
    ) -> list[TranscribedSegment]:
        """VAD on the whole waveform, then ASR on every speech segment concurrently.

        Token times are offset by each segment's start, so they count from the start of
        ``waveform``. This is what the server-side ``transcribe`` model does (see
        :meth:`transcribe_on_server`). It holds the whole waveform and every result in memory: fine
        for minutes of audio; hours need a caller that decodes and sends chunks (the api's batch
        transcription job, still to come, will).
        """
        code = _check_options(language, use_itn)
        x = validate_waveform(waveform)
        segments: list[SpeechSegment] = await self.vad.segments(x, max_end_silence_ms)
        transcripts = await self.transcribe_many((x[s.samples()] for s in segments), code, use_itn)
        return [
            TranscribedSegment(s.start_ms, s.end_ms, t.shifted(s.start_ms))
            for s, t in zip(segments, transcripts, strict=True)
        ]

    async def transcribe_on_server(
        self, waveform: np.ndarray, language: str = "auto", use_itn: bool = True
    ) -> list[TranscribedSegment]:
        """The same as :meth:`transcribe_segments` (default end silence), done by Triton's ``transcribe``
        BLS model in one request: at most :data:`Transcribe.MAX_SECONDS` (60 s); no token times."""
        code = _check_options(language, use_itn)
        x = validate_waveform(waveform)
        if x.size > Transcribe.MAX_SECONDS * SAMPLE_RATE:
            raise ValueError(
                f"waveform is {x.size / SAMPLE_RATE:.1f} s; the transcribe model takes at most "
                f"{Transcribe.MAX_SECONDS:.0f} s: use transcribe_segments()"
            )
        inputs = {
            Transcribe.WAVEFORM: x[None],
            Transcribe.LANGUAGE: np.array([[code.encode("utf-8")]], dtype=np.object_),
            Transcribe.USE_ITN: np.array([[bool(use_itn)]], dtype=bool),
        }
        out = await self.client.infer(self.transcribe_model, inputs, _TRANSCRIBE_OUTPUTS)
        rows = out[Transcribe.SEGMENTS].reshape(-1, 2)
        cols = [[_str(v) for v in out[name].reshape(-1)] for name in _TRANSCRIBE_OUTPUTS[1:]]
        return [
            TranscribedSegment(int(s), int(e), Transcript(text, lang, emo, event))
            for (s, e), text, lang, emo, event in zip(rows, *cols, strict=False)
        ]
