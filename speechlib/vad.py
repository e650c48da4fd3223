"""fsmn-VAD end-pointing: per-frame speech/noise scores -> speech segments, offline or streaming.

This is our port of the post-processing FunASR runs after the FSMN network (the ``E2EVadModel`` of
funasr / funasr-onnx, MIT), restructured around one incremental object so that the offline ``vad``
model and the streaming ``vad_stream`` model share it and agree by construction. Behaviour is kept
frame for frame, quirks included (``tests/test_vad_endpointer.py`` compares every frame's decision
with funasr-onnx's implementation); only the multiple-utterance detect mode is supported, which is the
one fsmn-VAD's config uses.

Units: frames are 10 ms (``FRAME_MS``); frame ``t`` is kaldi frame ``t`` (samples ``[160t, 160t+400)``);
segment times are integer milliseconds from the start of the stream, ``start = first_frame * 10`` and
``end = (last_frame + 1) * 10``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np

from speechlib.features import FrontendConfig, StreamingFeatures

FRAME_MS = 10


@dataclass(frozen=True)
class VadConfig:
    """The ``model_conf`` block of fsmn-VAD's ``config.yaml`` (times in ms)."""

    max_end_silence_time: int = 800
    max_start_silence_time: int = 3000
    window_size_ms: int = 200
    sil_to_speech_time_thres: int = 150
    speech_to_sil_time_thres: int = 150
    speech_2_noise_ratio: float = 1.0
    do_extend: int = 1
    lookback_time_start_point: int = 200
    lookahead_time_end_point: int = 100
    # FunASR's template says 60000; our ASR takes utterances of at most 30 s.
    max_single_segment_time: int = 30000
    snr_thres: float = -100.0
    noise_frame_num_used_for_snr: int = 100
    decibel_thres: float = -100.0
    speech_noise_thres: float = 0.6
    sil_pdf_ids: tuple[int, ...] = (0,)
    detect_mode: int = 1  # multiple utterances; the only mode supported

    @classmethod
    def from_dict(cls, conf: dict, **overrides) -> VadConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in conf.items() if k in names}
        values.update(overrides)
        if "sil_pdf_ids" in values:
            values["sil_pdf_ids"] = tuple(values["sil_pdf_ids"])
        cfg = cls(**values)
        if cfg.detect_mode != 1:
            raise ValueError("only fsmn-VAD's multiple-utterance detect mode (detect_mode: 1) is supported")
        return cfg


@dataclass(frozen=True)
class SpeechEvent:
    """A decision of the end-pointer: ``start_ms`` or ``end_ms`` is ``None`` when not decided here."""

    start_ms: int | None
    end_ms: int | None


# Window-level transitions (what the sliding window of frame decisions says happened).
_SIL2SIL, _SIL2SPEECH, _SPEECH2SPEECH, _SPEECH2SIL = range(4)
# End-pointer states.
_WAITING, _IN_SPEECH = 0, 1


class SpeechWindow:
    """Sliding vote over the last ``window_size_ms`` of frame decisions (1 = speech)."""

    def __init__(self, cfg: VadConfig):
        self.size = cfg.window_size_ms // FRAME_MS
        self.to_speech = cfg.sil_to_speech_time_thres // FRAME_MS
        self.to_silence = cfg.speech_to_sil_time_thres // FRAME_MS
        self.reset()

    def reset(self) -> None:
        self.votes = [0] * self.size
        self.pos = 0
        self.total = 0
        self.speaking = False

    def push(self, is_speech: bool) -> int:
        vote = 1 if is_speech else 0
        self.total += vote - self.votes[self.pos]
        self.votes[self.pos] = vote
        self.pos = (self.pos + 1) % self.size
        if not self.speaking and self.total >= self.to_speech:
            self.speaking = True
            return _SIL2SPEECH
        if self.speaking and self.total <= self.to_silence:
            self.speaking = False
            return _SPEECH2SIL
        return _SPEECH2SPEECH if self.speaking else _SIL2SIL


class Endpointer:
    """Turns per-frame silence posteriors and energies into speech segments, incrementally.

    Feed frames in order with :meth:`push_frames`; the last call passes ``final=True``. Each call
    returns the events it decided. Holds O(1) state: memory does not grow with the stream.
    """

    def __init__(self, cfg: VadConfig, max_end_silence_ms: int | None = None):
        self.cfg = cfg
        end_sil = cfg.max_end_silence_time if max_end_silence_ms is None else int(max_end_silence_ms)
        # A segment ends once the silence after it lasts this long (ms), counted from the frame the
        # window turned to silence (which itself needs speech_to_sil_time_thres).
        self.end_silence_threshold = end_sil - cfg.speech_to_sil_time_thres
        self.window = SpeechWindow(cfg)
        self.latency = self.window.size + (cfg.lookback_time_start_point // FRAME_MS if cfg.do_extend else 0)
        self.lookahead_frames = cfg.lookahead_time_end_point // FRAME_MS
        self.max_segment_frames = cfg.max_single_segment_time / FRAME_MS
        self.noise_db = -100.0
        self.frames_seen = 0
        self.consumed = 0  # first frame not yet handed to the output (FunASR's data_buf_start_frame)
        self.ends_detected = 0
        self.finished = False
        self._events: list[SpeechEvent] = []
        self._open_start_ms: int | None = None
        self._reset_segment()

    # -- public ---------------------------------------------------------------------------------
    def push_frames(
        self, silence_prob: np.ndarray, decibels: np.ndarray, final: bool = False
    ) -> list[SpeechEvent]:
        """Consume frames ``frames_seen ..`` given each frame's silence posterior and energy (dB)."""
        if self.finished:
            raise RuntimeError("end-pointer already finished")
        n = len(silence_prob)
        if len(decibels) != n:
            raise ValueError(f"{n} scores but {len(decibels)} energies")
        self._events = []
        for i in range(n):
            t = self.frames_seen
            is_last = final and i == n - 1
            self._detect(self._classify(float(silence_prob[i]), float(decibels[i]), t), t, is_last)
            self.frames_seen += 1
        if final:
            self.finished = True
            if n == 0 and self.state == _IN_SPEECH:  # no frame left to carry the final decision
                self._voice_end(self.frames_seen - 1, is_last=True)
        return self._events

    # -- frame classification -------------------------------------------------------------------
    def _classify(self, silence_prob: float, db: float, t: int) -> bool:
        cfg = self.cfg
        if db < cfg.decibel_thres:
            # FunASR feeds such a frame to the window detector twice (once inside its classifier
            # and once more after it); kept for frame-level parity.
            self._detect(False, t, False)
            return False
        speech_score = 1.0 - silence_prob
        if speech_score >= silence_prob**cfg.speech_2_noise_ratio + cfg.speech_noise_thres:
            return (db - self.noise_db) >= cfg.snr_thres and db >= cfg.decibel_thres
        n = cfg.noise_frame_num_used_for_snr
        self.noise_db = db if self.noise_db < -99.9 else (db + self.noise_db * (n - 1)) / n
        return False

    # -- the state machine ----------------------------------------------------------------------
    def _reset_segment(self) -> None:
        self.state = _WAITING
        self.silence_run = 0
        self.last_speech_frame = 0
        self.last_silence_frame = -1
        self.start_frame = -1
        self.window.reset()

    def _too_long(self, t: int) -> bool:
        return t - self.start_frame + 1 > self.max_segment_frames

    def _detect(self, is_speech: bool, t: int, is_last: bool) -> None:
        change = self.window.push(is_speech)
        ended = False
        if change == _SIL2SIL:
            self.silence_run += 1
        else:
            self.silence_run = 0

        if change == _SIL2SPEECH and self.state == _WAITING:
            start = max(self.consumed, t - self.latency)
            self._voice_start(start)
            for f in range(start + 1, t + 1):
                self._voice(f)
        elif change != _SIL2SIL and self.state == _IN_SPEECH:
            if change == _SIL2SPEECH:
                for f in range(self.last_speech_frame + 1, t):
                    self._voice(f)
            if self._too_long(t):
                self._voice_end(t, is_last=False)
                ended = True
            elif not is_last:
                self._voice(t)
            else:
                self._voice_end(t, is_last=True)
                ended = True
        elif change == _SIL2SIL and self.state == _WAITING:
            if is_last and self.ends_detected == 0:
                # Nothing was said at all: FunASR closes an empty, unreported segment.
                self.ends_detected += 1
                ended = True
            elif t >= self.latency:
                self._silence(t - self.latency)
        elif change == _SIL2SIL and self.state == _IN_SPEECH:
            if self.silence_run * FRAME_MS >= self.end_silence_threshold:
                back = self.end_silence_threshold // FRAME_MS
                if self.cfg.do_extend:
                    back = max(0, back - self.lookahead_frames - 1)
                self._voice_end(t - back, is_last=False)
                ended = True
            elif self._too_long(t):
                self._voice_end(t, is_last=False)
                ended = True
            elif self.cfg.do_extend and not is_last:
                if self.silence_run <= self.lookahead_frames:
                    self._voice(t)
            elif is_last:
                self._voice_end(t, is_last=True)
                ended = True
        if ended:
            self._reset_segment()

    def _advance(self, frame: int) -> None:
        """Hand frame ``frame`` to the output (FunASR pops one frame of its sample buffer)."""
        self.consumed = max(self.consumed, frame) + 1

    def _silence(self, frame: int) -> None:
        self.last_silence_frame = frame
        if self.state == _WAITING:
            self.consumed = max(self.consumed, frame)

    def _voice_start(self, frame: int) -> None:
        self.start_frame = frame
        self.state = _IN_SPEECH
        self._open_start_ms = frame * FRAME_MS
        self._advance(frame)
        self._events.append(SpeechEvent(self._open_start_ms, None))

    def _voice(self, frame: int) -> None:
        self.last_speech_frame = frame
        self._advance(frame)

    def _voice_end(self, frame: int, is_last: bool) -> None:
        for f in range(self.last_speech_frame + 1, frame):
            self._voice(f)
        self._advance(frame)
        self.ends_detected += 1
        end_ms = (frame + 1) * FRAME_MS
        # Merge with the start event when both were decided in this same call.
        if (
            self._events
            and self._events[-1].end_ms is None
            and self._events[-1].start_ms == self._open_start_ms
        ):
            self._events[-1] = SpeechEvent(self._open_start_ms, end_ms)
        else:
            self._events.append(SpeechEvent(None, end_ms))
        self._open_start_ms = None


def events_to_segments(events: Iterable[SpeechEvent]) -> list[tuple[int, int]]:
    """Pair streaming events into closed ``(start_ms, end_ms)`` segments."""
    segments, start = [], None
    for ev in events:
        if ev.start_ms is not None:
            if start is not None:
                raise ValueError("a segment started before the previous one ended")
            start = ev.start_ms
        if ev.end_ms is not None:
            if start is None:
                raise ValueError("a segment ended that never started")
            segments.append((start, ev.end_ms))
            start = None
    return segments


class VadStream:
    """One audio stream through the fsmn-VAD front end and end-pointer; the network runs outside.

    Usage (the network is any callable on ``[T, 400]`` features that keeps its own cache)::

        feats, decibels = stream.accept_audio(samples, final)
        silence = network(feats)[:, 0]          # posterior of silence pdf(s)
        events = stream.accept_scores(silence_posteriors, decibels, final)

    Splitting the two halves lets a server batch the network across many streams.
    """

    def __init__(self, frontend: FrontendConfig, cmvn, cfg: VadConfig, max_end_silence_ms: int | None = None):
        self.features = StreamingFeatures(frontend, cmvn)
        self.endpointer = Endpointer(cfg, max_end_silence_ms)
        self.sil_pdf_ids = list(cfg.sil_pdf_ids)

    def accept_audio(self, samples: np.ndarray, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return self.features.accept(samples, final)

    def silence_posterior(self, scores: np.ndarray) -> np.ndarray:
        """``scores [T, n_pdfs]`` (softmax output) -> summed silence posterior ``[T]``."""
        return scores[:, self.sil_pdf_ids].sum(axis=1)

    def accept_scores(
        self, scores: np.ndarray, decibels: np.ndarray, final: bool = False
    ) -> list[SpeechEvent]:
        return self.endpointer.push_frames(self.silence_posterior(scores), decibels, final)
