"""A live session's recording: fixed-length Ogg/Opus chunks per participant, and the finalize step
that turns them (with the live transcript) into the session's audio file and transcription.

Timeline. Each participant (LiveKit identity) has one track. Its ``offset_seconds`` (where its chunk
0 starts, in seconds from the session start) is fixed when its first chunk arrives: the uploader's
``offset`` when it sends one, else measured from the arrival time (arrival minus the session's
``started_at`` minus the audio the chunk and those before it hold). The first chunk of the session
sets ``started_at`` when it is not set. Silence is recorded, not skipped, so chunk ``seq`` of a
track starts at ``offset + seq x chunk_seconds`` on the session's timeline, whatever order the
chunks arrive in; a missing chunk is silence in the mix.

Chunks are idempotent per (participant, seq): the same bytes again change nothing; other bytes for
a stored seq are refused (409). Each chunk's blob is written (atomically) before its row, so a crash
loses at most the chunk in flight, and the uploader resumes from ``GET .../recording``.

Finalize (:func:`finalize`) is idempotent: the mix has a fixed id per session and the live
transcription is stored once (source ``live``, ``stt_model`` :data:`LIVE_STT_MODEL`); a second call
returns what the first stored. After it, chunks for the session are refused (409).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.blobstore import BlobStore, chunk_path
from api.crud import audio as audio_crud
from api.crud import transcriptions as tcrud
from api.db.types import utcnow
from api.live import LiveStore
from api.media import decode_resampled, encode_f32_to_ogg_opus, media
from api.models import (
    AudioFile,
    RecordingChunk,
    RecordingSession,
    RecordingTrack,
    SessionStatus,
    Transcription,
    TranscriptionSource,
)
from inference_client.audio import SAMPLE_RATE, DecodedAudio
from speechlib.transcript import Segment, Transcript

log = logging.getLogger("api.recording")

CHUNK_FORMAT = "ogg"  # FFmpeg's name of the container a chunk must be in
CHUNK_MEDIA_TYPE = "audio/ogg"
DURATION_TOLERANCE_S = 0.25  # a chunk may run this much past RECORDING_CHUNK_SECONDS
MAX_SEQ = 10_000_000
MAX_OFFSET_S = 7 * 24 * 3600.0
LIVE_STT_MODEL = "livekit-live"  # marks the transcription that finalize stored
MIX_FILENAME = "live-recording.ogg"
MIX_BITRATE = 32_000
MIX_COMPRESSION_LEVEL = "5"  # libopus complexity 0-10: 5 encodes ~40 % faster than 10, speech alike
OPUS_RATE = 48_000
_MIX_NAMESPACE = uuid.UUID("6f1b1f5e-3a0e-4c55-9a43-2f4d7c1e8b21")


class RecordingError(Exception):
    """A chunk or a finalize the api refuses: ``status_code`` (409, 415, 422), ``code``, message."""

    def __init__(self, status_code: int, code: str, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def mix_file_id(session_id: uuid.UUID) -> uuid.UUID:
    """The id of a session's finalized mix (one per session: finalize cannot store two)."""
    return uuid.uuid5(_MIX_NAMESPACE, f"live-mix:{session_id}")


def finalized_transcription(s: Session, session_id: uuid.UUID) -> Transcription | None:
    """The transcription :func:`finalize` stored for the session, or None if it has not run."""
    return s.scalar(
        select(Transcription).where(
            Transcription.session_id == session_id,
            Transcription.source == TranscriptionSource.live.value,
            Transcription.stt_model == LIVE_STT_MODEL,
        )
    )


def chunk_start_s(track: RecordingTrack, seq: int) -> float:
    """Where chunk ``seq`` of ``track`` starts on the session's timeline (seconds)."""
    return track.offset_seconds + seq * track.chunk_seconds


# ----------------------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class ChunkOutcome:
    track: RecordingTrack
    chunk: RecordingChunk
    created: bool


@contextlib.contextmanager
def _as_file(data: bytes) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix="intrascribe-chunk-", suffix=".ogg")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def probe_chunk(data: bytes, chunk_seconds: float) -> float:
    """The chunk's duration in seconds, measured by the one decoder (PyAV). Raises
    :class:`api.crud.audio.AudioRejected` for what is not audio, :class:`RecordingError` for audio that is not
    Ogg, or longer than a chunk may be."""
    with _as_file(data) as path:
        info = audio_crud.probe(path, CHUNK_FORMAT)
    if info.format != CHUNK_FORMAT:
        raise RecordingError(415, "not_ogg", f"a chunk must be Ogg (Opus), not {info.format}")
    if info.duration_seconds is None:
        raise RecordingError(422, "no_duration", "the chunk's duration cannot be measured")
    if info.duration_seconds > chunk_seconds + DURATION_TOLERANCE_S:
        raise RecordingError(
            422,
            "chunk_too_long",
            f"the chunk holds {info.duration_seconds:.3f} s; chunks are {chunk_seconds:g} s "
            f"(RECORDING_CHUNK_SECONDS) at most",
        )
    return float(info.duration_seconds)


def lock_session(s: Session, session_id: uuid.UUID) -> None:
    """Serialise chunk writes and finalize of one session until the transaction ends: a row lock on
    PostgreSQL, the database's write lock on SQLite (so hold it briefly)."""
    s.execute(
        update(RecordingSession)
        .where(RecordingSession.id == session_id)
        .values(status=RecordingSession.status)
        .execution_options(synchronize_session=False)
    )


def _check_open(s: Session, session: RecordingSession) -> None:
    if finalized_transcription(s, session.id) is not None:
        raise RecordingError(409, "finalized", "this session's recording is finalized; no more chunks")


def _new_track(
    s: Session,
    session: RecordingSession,
    participant: str,
    seq: int,
    duration: float,
    chunk_seconds: float,
    offset: float | None,
    now: datetime,
) -> RecordingTrack:
    """The participant's track, its offset fixed now (module docstring)."""
    recorded_until_now = seq * chunk_seconds + duration  # what this chunk and those before hold
    if offset is None:
        if session.started_at is None:
            offset = 0.0
        else:
            offset = max(0.0, (now - session.started_at).total_seconds() - recorded_until_now)
    if session.started_at is None:
        session.started_at = now - timedelta(seconds=offset + recorded_until_now)
    track = RecordingTrack(
        session_id=session.id,
        user_id=session.user_id,
        participant=participant,
        offset_seconds=round(float(offset), 3),
        chunk_seconds=chunk_seconds,
    )
    s.add(track)
    s.flush()  # IntegrityError if another request created it meanwhile: the caller retries
    return track


def accept_chunk(
    s: Session,
    blobs: BlobStore,
    session: RecordingSession,
    participant: str,
    seq: int,
    data: bytes,
    chunk_seconds: float,
    offset: float | None = None,
) -> ChunkOutcome:
    """Store chunk ``seq`` of ``participant`` (module docstring). Flushes; the caller commits (an
    ``IntegrityError`` means a concurrent upload won a race: roll back and call again)."""
    sha = hashlib.sha256(data).hexdigest()
    track = audio_crud.get_track(s, session.id, participant)
    if track is not None:
        existing = audio_crud.get_chunk(s, track.id, seq)
        if existing is not None:
            if existing.sha256 == sha:
                return ChunkOutcome(track, existing, created=False)
            raise RecordingError(
                409, "chunk_conflict", f"chunk {seq} of {participant!r} is stored with other bytes"
            )
    duration = probe_chunk(data, track.chunk_seconds if track is not None else chunk_seconds)
    lock_session(s, session.id)  # after finalize's commit, or before it: never in its middle
    _check_open(s, session)
    now = utcnow()
    if track is None:
        track = _new_track(s, session, participant, seq, duration, chunk_seconds, offset, now)
    path = chunk_path(session.user_id, session.id, track.id, seq, sha, CHUNK_FORMAT)
    stored = blobs.put(path, [data], CHUNK_MEDIA_TYPE)  # atomic: a whole chunk or none
    chunk = RecordingChunk(
        track_id=track.id,
        session_id=session.id,
        user_id=session.user_id,
        seq=seq,
        storage_backend=stored.backend,
        storage_bucket=stored.bucket,
        storage_path=stored.path,
        size_bytes=stored.size,
        sha256=stored.sha256,
        duration_seconds=round(duration, 3),
    )
    s.add(chunk)
    s.flush()  # a racing upload of the same seq: IntegrityError, the caller retries (the blob, same
    # bytes at the same path or other bytes at another, is then found or refused with 409)
    if session.status == SessionStatus.created.value:
        session.status = SessionStatus.recording.value
    return ChunkOutcome(track, chunk, created=True)


def track_summary(s: Session, track: RecordingTrack) -> dict[str, Any]:
    """What ``GET .../recording`` lists for a track: the stored seqs, the gaps below the highest one,
    and the track's extent on the session's timeline."""
    chunks = audio_crud.chunks_of_track(s, track.id)
    seqs = [c.seq for c in chunks]
    have = set(seqs)
    missing = [i for i in range(seqs[-1] + 1) if i not in have] if seqs else []
    end = (
        chunk_start_s(track, chunks[-1].seq) + chunks[-1].duration_seconds if chunks else track.offset_seconds
    )
    return {
        "participant": track.participant,
        "offset_seconds": track.offset_seconds,
        "chunk_seconds": track.chunk_seconds,
        "seqs": seqs,
        "missing": missing,
        "next_seq": (seqs[-1] + 1) if seqs else 0,
        "recorded_seconds": round(sum(c.duration_seconds for c in chunks), 3),
        "end_seconds": round(end, 3),
    }


# --------------------------------------------------------------------------------------- finalize
@dataclass(frozen=True)
class FinalizeOutcome:
    transcription: Transcription
    audio_file: AudioFile | None
    duration_seconds: float
    participants: list[str]
    created: bool


@contextlib.contextmanager
def _chunk_file(blobs: BlobStore, chunk: RecordingChunk) -> Iterator[Path]:
    local = blobs.local_file(chunk.storage_path)
    if local is not None:
        yield local
        return
    fd, tmp = tempfile.mkstemp(prefix="intrascribe-chunk-", suffix=".ogg")
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in blobs.open_chunks(chunk.storage_path):
                f.write(piece)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def chunk_ids(s: Session, session_id: uuid.UUID) -> set[uuid.UUID]:
    return set(s.scalars(select(RecordingChunk.id).where(RecordingChunk.session_id == session_id)))


def _placed_chunks(
    s: Session, tracks: list[RecordingTrack], rate: int, with_offset: bool = True
) -> tuple[list[tuple[RecordingTrack, list[RecordingChunk]]], int]:
    """The tracks that have chunks, with them, and the samples the sum needs (timeline positions:
    offset + seq x chunk_seconds, or seq x chunk_seconds with ``with_offset`` False)."""
    placed = []
    total = 0
    for track in tracks:
        chunks = audio_crud.chunks_of_track(s, track.id)
        if not chunks:
            continue
        placed.append((track, chunks))
        base = track.offset_seconds if with_offset else 0.0
        for c in chunks:
            start = round((base + c.seq * track.chunk_seconds) * rate)
            total = max(total, start + math.ceil(c.duration_seconds * rate))
    return placed, total


def _decode_chunk(path: Path, rate: int) -> np.ndarray:
    """A chunk's samples at ``rate`` (in a media process: :mod:`api.media`)."""
    return media.run(decode_resampled, path, rate, OPUS_RATE)


def _sum_chunks(
    blobs: BlobStore,
    placed: list[tuple[RecordingTrack, list[RecordingChunk]]],
    out: np.ndarray,
    rate: int,
    with_offset: bool = True,
) -> None:
    """Decode each chunk (the one decoder) and add it into ``out`` at its place."""
    for track, chunks in placed:
        base = track.offset_seconds if with_offset else 0.0
        limit = round((track.chunk_seconds + DURATION_TOLERANCE_S) * rate)
        for c in chunks:
            with _chunk_file(blobs, c) as f:
                x = _decode_chunk(f, rate)
            start = round((base + c.seq * track.chunk_seconds) * rate)
            x = x[: max(0, min(limit, out.size - start))]
            out[start : start + x.size] += x


def render_track(
    s: Session, blobs: BlobStore, track: RecordingTrack, path: Path, rate: int = SAMPLE_RATE
) -> DecodedAudio | None:
    """One participant's track from its chunk 0 (track time: add ``offset_seconds`` for session
    time), gaps as silence, written as raw float32 (:class:`DecodedAudio`, what the transcriber
    reads) to ``path``. None if the track has no chunk."""
    placed, total = _placed_chunks(s, [track], rate, with_offset=False)
    if not placed or total <= 0:
        return None
    samples = np.memmap(path, dtype=np.float32, mode="w+", shape=(total,))
    try:
        _sum_chunks(blobs, placed, samples, rate, with_offset=False)
        np.clip(samples, -1.0, 1.0, out=samples)
        samples.flush()
    finally:
        del samples
    return DecodedAudio.open(path, rate)


def build_mix(
    s: Session, blobs: BlobStore, tracks: list[RecordingTrack], work: Path, rate: int = SAMPLE_RATE
) -> tuple[Path, float] | None:
    """Every track's chunks decoded and summed at their place on the timeline (offset + seq x
    chunk_seconds), clipped to [-1, 1], into ``work/mix.ogg`` (Ogg/Opus, mono, ``rate`` Hz). The sum
    lives in a float32 file on disk (np.memmap), so memory stays at one chunk whatever the meeting's
    length. Returns (path, duration in seconds), or None if no track has a chunk."""
    placed, total = _placed_chunks(s, tracks, rate)
    if not placed or total <= 0:
        return None
    mix = np.memmap(work / "mix.f32", dtype=np.float32, mode="w+", shape=(total,))
    try:
        _sum_chunks(blobs, placed, mix, rate)
        mix.flush()
        out = work / "mix.ogg"
        media.run(encode_f32_to_ogg_opus, work / "mix.f32", out, rate, MIX_BITRATE, MIX_COMPRESSION_LEVEL)
    finally:
        del mix
        (work / "mix.f32").unlink(missing_ok=True)
    return out, total / rate


def live_segments(live: LiveStore, session_id: uuid.UUID) -> list[Segment]:
    """The live transcript's final segments (docs/interfaces.md, live segments): an interim is
    replaced by its final (same ``segment_id``), and interims that never got one are left out."""
    by_id: dict[Any, dict[str, Any]] = {}
    for i, item in enumerate(live.segments(session_id)):
        key = item.get("segment_id", item.get("id", f"#{i}"))
        by_id[key] = item  # later writes of a segment win
    out = []
    for item in by_id.values():
        if not item.get("is_final", item.get("final", True)):
            continue
        try:
            out.append(Segment.from_dict(item))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("live segment of session %s skipped: %s", session_id, e)
    return out


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(1024 * 1024):
            yield piece


def finalize(
    s: Session, blobs: BlobStore, live: LiveStore, session: RecordingSession, work_dir: Path | None = None
) -> FinalizeOutcome:
    """Finalize ``session`` (module docstring): the mix into the blob store as the session's audio
    file, the live transcript as its transcription (source ``live``) with real times, speakers and
    the true duration (the mix's length; without audio, the last segment's end), the session
    ``completed``. A second call returns what the first stored (``created`` False). Flushes; the
    caller commits. :class:`RecordingError` 409 when there is neither audio nor transcript."""
    done = finalized_transcription(s, session.id)
    if done is None:
        # The mix is built before taking the session's lock (on SQLite that lock stops every write
        # of the deployment); the lock is then taken and the chunk set checked again: a chunk that
        # arrived meanwhile makes the mix be built again, under the lock.
        with tempfile.TemporaryDirectory(prefix="intrascribe-finalize-", dir=work_dir) as tmp:
            used = chunk_ids(s, session.id)
            built = build_mix(s, blobs, audio_crud.tracks_of_session(s, session.id), Path(tmp))
            lock_session(s, session.id)
            done = finalized_transcription(s, session.id)
            if done is None:
                if chunk_ids(s, session.id) != used:
                    built = build_mix(s, blobs, audio_crud.tracks_of_session(s, session.id), Path(tmp))
                return _store_final(s, blobs, live, session, built)
    audio = s.get(AudioFile, done.audio_file_id) if done.audio_file_id else None
    tracks = audio_crud.tracks_of_session(s, session.id)
    return FinalizeOutcome(
        done, audio, session.duration_seconds or 0.0, [t.participant for t in tracks], created=False
    )


def _store_final(
    s: Session,
    blobs: BlobStore,
    live: LiveStore,
    session: RecordingSession,
    built: tuple[Path, float] | None,
) -> FinalizeOutcome:
    tracks = audio_crud.tracks_of_session(s, session.id)
    segments = live_segments(live, session.id)
    audio_file = None
    duration = max((seg.end for seg in segments), default=0.0)
    if built is not None:
        path, duration = built
        audio_file = audio_crud.store_audio(
            s,
            blobs,
            session,
            _file_chunks(path),
            MIX_FILENAME,
            CHUNK_MEDIA_TYPE,
            file_id=mix_file_id(session.id),
        )
    if audio_file is None and not segments:
        raise RecordingError(
            409, "nothing_recorded", "this session has no recording chunks and no live transcript"
        )
    transcript = Transcript.from_segments(segments, duration=round(duration, 3))
    row = tcrud.save_transcription(
        s,
        session=session,
        transcript=transcript,
        source=TranscriptionSource.live.value,
        audio_file_id=audio_file.id if audio_file is not None else None,
        stt_model=LIVE_STT_MODEL,
    )
    session.duration_seconds = round(duration, 3)
    session.status = SessionStatus.completed.value
    if session.ended_at is None:
        session.ended_at = utcnow()
    s.flush()
    return FinalizeOutcome(row, audio_file, round(duration, 3), [t.participant for t in tracks], created=True)
