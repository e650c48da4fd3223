"""CTC decoding for SenseVoice: greedy search, forced alignment, token times.

Units: an encoder frame of SenseVoice is 60 ms (10 ms fbank frames stacked by LFR ``n = 6``,
:data:`FRAME_MS`). Frame indices count the *speech* frames, i.e. after the four prompt frames
(language, event, emotion, text normalisation) the encoder puts in front; times are integer
milliseconds from the start of the utterance.

Token times follow FunASR's ``output_timestamp=True`` (``SenseVoiceSmall.inference``): a Viterbi CTC
forced alignment of the decoded text tokens over the speech frames' log-probabilities, with the blank
made certain (log-prob 0) on frames whose best label is blank; a token spanning frames ``[s, e)`` gets
``start = max(60 s - 30, 0)``, ``end = min(60 e - 30, 60 T - 30)`` ms. Ties in the Viterbi recursion
break as FunASR's torch implementation does (stay, then advance by one, then skip a blank), in float32.
One difference by design: FunASR aligns the pieces it gets by re-encoding the decoded text with
sentencepiece (dropping the first four); we align the decoded text token ids themselves, which is the
same sequence whenever re-encoding is stable (it is for the pieces sentencepiece produced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FRAME_MS = 60
HALF_FRAME_MS = FRAME_MS // 2
BLANK = 0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32 (the ONNX graph outputs raw CTC logits)."""
    x = np.asarray(logits, dtype=np.float32)
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32, copy=False)


def greedy_decode(logits: np.ndarray, blank: int = BLANK) -> tuple[np.ndarray, np.ndarray]:
    """Best path of ``logits [T, V]`` with repeats collapsed and blanks removed.

    Returns ``(ids, first_frames)``: the token ids and the frame where each token's run begins.
    """
    best = np.asarray(logits).argmax(axis=-1)
    if best.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], best[1:] != best[:-1])))
    labels = best[starts]
    keep = labels != blank
    return labels[keep].astype(np.int64), starts[keep].astype(np.int64)


def greedy_token_probs(logits: np.ndarray, blank: int = BLANK) -> np.ndarray:
    """The CTC posterior of each token :func:`greedy_decode` returns: the mean, over the frames of
    the token's run on the best path, of the softmax probability of its label there (the frame's
    largest probability, since the label is the argmax). float32 ``[N]`` in (0, 1], in the order of
    :func:`greedy_decode`'s ids. A frame's largest probability is ``1 / sum(exp(x - max))``."""
    x = np.asarray(logits, dtype=np.float32)
    if x.shape[0] == 0:
        return np.zeros(0, np.float32)
    best = x.argmax(axis=-1)
    top = np.empty(x.shape[0], np.float32)
    for a in range(0, x.shape[0], 16):  # rows in chunks: no [T, V] temporary
        rows = x[a : a + 16]
        top[a : a + 16] = 1.0 / np.exp(rows - rows.max(axis=-1, keepdims=True)).sum(axis=-1)
    starts = np.flatnonzero(np.concatenate(([True], best[1:] != best[:-1])))
    ends = np.append(starts[1:], best.size)
    sums = np.add.reduceat(top.astype(np.float64), starts)
    means = (sums / (ends - starts)).astype(np.float32)
    return means[best[starts] != blank]


def confidence_of(probs: Sequence[float | None]) -> float | None:
    """A confidence in [0, 1] for a run of tokens: the geometric mean of their CTC posteriors
    (:func:`greedy_token_probs`); None for no tokens, or when one token's posterior is unknown."""
    if len(probs) == 0 or any(p is None for p in probs):
        return None
    return float(np.exp(np.mean(np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)))))


def extended_labels(targets: Sequence[int], blank: int = BLANK) -> np.ndarray:
    """CTC's extended label sequence of ``targets`` (no blanks): blank, y1, blank, y2, ..., yL, blank."""
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    ext = np.full(2 * targets.size + 1, blank, np.int64)
    ext[1::2] = targets
    return ext


def forced_align(log_probs: np.ndarray, targets: Sequence[int], blank: int = BLANK) -> np.ndarray:
    """Viterbi CTC alignment of ``targets`` (no blanks) to ``log_probs [T, V]``: the label of each frame.

    The returned ``[T]`` array holds ``blank`` or a target label per frame. With no targets every
    frame is blank. If the targets cannot fit in ``T`` frames the path is the best partial one.
    """
    lp = np.asarray(log_probs, dtype=np.float32)
    ext = extended_labels(targets, blank)
    return viterbi(lp[:, ext], ext, blank)


def viterbi(emit: np.ndarray, ext: np.ndarray, blank: int = BLANK) -> np.ndarray:
    """:func:`forced_align` on the emissions of the extended labels: ``emit [T, S]`` = log-probs of
    ``ext`` (:func:`extended_labels`) per frame. Returns the label of each frame."""
    T, S = emit.shape[0], ext.size
    if T == 0:
        return np.zeros(0, np.int64)
    if S == 1:
        return np.full(T, blank, np.int64)
    # A skip from state s-2 to s is allowed when s is a label differing from the label at s-2.
    can_skip = np.zeros(S, bool)
    can_skip[2:] = ext[2:] != ext[:-2]
    neg_inf = np.float32(-np.inf)
    score = np.full(S, neg_inf, np.float32)
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = np.zeros((T, S), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, T):
        stay = score
        step = np.concatenate(([neg_inf], score[:-1]))
        skip = np.where(can_skip, np.concatenate(([neg_inf, neg_inf], score[:-2])), neg_inf)
        cands = np.stack((stay, step, skip))
        choice = cands.argmax(axis=0)  # first maximum wins, as torch.max does
        score = emit[t] + cands[choice, np.arange(S)]
        back[t] = choice
    # End in the last label or the trailing blank (ties: the label, as FunASR's argmax does).
    state = S - 2 if score[S - 2] >= score[S - 1] else S - 1
    path = np.empty(T, np.int64)
    path[T - 1] = state
    for t in range(T - 1, 0, -1):
        state = max(state - int(back[t, state]), 0)
        path[t - 1] = state
    return ext[path]


def boost_blank(log_probs: np.ndarray, blank: int = BLANK) -> np.ndarray:
    """A copy of ``log_probs`` with the blank's log-prob set to 0 wherever blank is the best label
    (FunASR does this before aligning, so silences stay blank)."""
    lp = np.array(log_probs, dtype=np.float32, copy=True)
    lp[lp.argmax(axis=-1) == blank, blank] = 0.0
    return lp


def boosted_log_probs(
    logits: np.ndarray, columns: np.ndarray, blank: int = BLANK, chunk_frames: int = 16
) -> np.ndarray:
    """``boost_blank(log_softmax(logits))[:, columns]``, bit for bit, without the two ``[T, V]``
    float32 copies: rows go through in chunks that stay in cache, and only ``columns`` are kept.

    With SenseVoice's 25 055 pieces the full-width passes were ~3 % of an utterance's CPU time.
    Bit-identical because each row's arithmetic is unchanged (``z = x - max``, the same contiguous
    row sum of ``exp(z)``, ``z - log(sum)``), and because a row's largest log-prob is exactly
    ``-log(sum)`` (its largest ``z`` is 0), so "blank is the first maximum" is read from the columns
    up to the blank."""
    x = np.asarray(logits, dtype=np.float32)
    T, V = x.shape
    columns = np.asarray(columns, dtype=np.int64)
    out = np.empty((T, columns.size), np.float32)
    buf = np.empty((min(chunk_frames, T), V), np.float32)
    for a in range(0, T, chunk_frames):
        rows = x[a : a + chunk_frames]
        z = np.subtract(rows, rows.max(axis=-1, keepdims=True), out=buf[: rows.shape[0]])
        kept, head = z[:, columns], z[:, : blank + 1].copy()  # copies: exp overwrites z
        log_sum = np.log(np.exp(z, out=z).sum(axis=-1, keepdims=True))
        out[a : a + rows.shape[0]] = kept - log_sum
        head_lp = head - log_sum  # log-probs of labels 0..blank: blank boosted iff it is the first max
        boost = (head_lp.argmax(axis=-1) == blank) & (head_lp[:, blank] == -log_sum[:, 0])
        out[a : a + rows.shape[0]][np.ix_(boost, columns == blank)] = 0.0
    return out


@dataclass(frozen=True)
class TokenSpan:
    """A token's frames ``[start_frame, end_frame)`` in the alignment."""

    token: int
    start_frame: int
    end_frame: int


def token_spans(alignment: np.ndarray, blank: int = BLANK) -> list[TokenSpan]:
    """Runs of equal non-blank labels in a frame alignment, in order (one per aligned token)."""
    a = np.asarray(alignment)
    if a.size == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1])))
    ends = np.concatenate((starts[1:], [a.size]))
    return [TokenSpan(int(a[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=False) if a[s] != blank]


def span_times_ms(spans: Sequence[TokenSpan], num_frames: int) -> np.ndarray:
    """``[N, 2]`` int32 ``(start_ms, end_ms)`` of each span, FunASR's formula (see module docstring)."""
    out = np.zeros((len(spans), 2), np.int32)
    limit = num_frames * FRAME_MS - HALF_FRAME_MS
    for i, sp in enumerate(spans):
        out[i, 0] = max(sp.start_frame * FRAME_MS - HALF_FRAME_MS, 0)
        out[i, 1] = min(sp.end_frame * FRAME_MS - HALF_FRAME_MS, limit)
    return out


def align_token_times(logits: np.ndarray, text_ids: Sequence[int], blank: int = BLANK) -> np.ndarray:
    """``[N, 2]`` int32 ``(start_ms, end_ms)`` for each of ``text_ids`` over speech-frame ``logits [T, V]``.

    ``logits`` are the raw CTC logits of the speech frames only (prompt frames removed).
    """
    text_ids = list(text_ids)
    if not text_ids:
        return np.zeros((0, 2), np.int32)
    ext = extended_labels(text_ids, blank)
    num_frames = np.shape(logits)[0]
    spans = token_spans(viterbi(boosted_log_probs(logits, ext, blank), ext, blank), blank)
    times = span_times_ms(spans, num_frames)
    if len(spans) != len(text_ids):
        # The targets did not fit (only possible when text tokens were emitted in prompt frames):
        # give the unplaced tokens the end of the utterance rather than failing the request.
        end = max(num_frames * FRAME_MS - HALF_FRAME_MS, 0)
        pad = np.full((len(text_ids) - len(spans), 2), end, np.int32)
        times = np.concatenate((times[: len(text_ids)], pad))[: len(text_ids)]
    return times


def word_times(pieces: Sequence[str], times_ms: np.ndarray) -> tuple[list[str], list[list[int]]]:
    """FunASR's ``post``: merge token times into word times (its ``words`` / ``timestamp``).

    A lone ``▁`` is dropped; a piece starting with ``▁`` begins a word; an ASCII-letters piece after an
    ASCII-letters word extends it; anything else (CJK characters, punctuation) is a word of its own.
    """
    words: list[str] = []
    stamps: list[list[int]] = []
    prev: str | None = None
    for i, (piece, (start, end)) in enumerate(zip(pieces, np.asarray(times_ms).tolist(), strict=False)):
        if piece == "\u2581":
            continue
        if i == 0:
            word = piece
            stamps.append([start, end])
            words.append(word)
        elif piece.startswith("\u2581"):
            word = piece[1:]
            stamps.append([start, end])
            words.append(word)
        elif prev is not None and prev.isalpha() and prev.isascii() and piece.isalpha() and piece.isascii():
            word = prev + piece
            stamps[-1][1] = end
            words[-1] = word
        else:
            word = piece
            stamps.append([start, end])
            words.append(word)
        prev = word
    return words, stamps
