"""Transcriptions: versions of a session's transcript.

Every store adds a version (1, 2, ... per session) and makes it current; the previous current one
stays as history. The batch job, the OpenAI-compatible endpoint, the direct calls and edits all
store through :func:`save_transcription`. A job stores at most one transcription: ``job_id`` is
unique, and a second completion of the same job gets the row the first one stored.

Concurrency: the version number is unique per session, so two stores racing for one session cannot
both succeed; the loser's flush raises ``IntegrityError`` (its transaction must be rolled back and the
call repeated in a new one: :func:`store_retrying` does that).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db.session import Database
from api.models import RecordingSession, Transcription, TranscriptionSource
from speechlib.languages import normalize_language
from speechlib.transcript import Segment, Transcript
from speechlib.transcript import rename_speaker as rename_in_transcript

T = TypeVar("T")

SOURCES = frozenset(s.value for s in TranscriptionSource)


def _word_count(transcript: Transcript) -> int:
    words = sum(len(s.words) for s in transcript.segments)
    return words or len(transcript.text.split())


def _confidence(transcript: Transcript) -> float | None:
    values = [s.confidence for s in transcript.segments if s.confidence is not None]
    return sum(values) / len(values) if values else None


def _session_language(detected: str | None) -> str | None:
    """The detected language as the session stores it (the one mapping), or None if there is none."""
    if not detected:
        return None
    try:
        code = normalize_language(detected)
    except ValueError:
        return None
    return None if code == "auto" else code


def by_job(s: Session, job_id: uuid.UUID) -> Transcription | None:
    return s.scalar(select(Transcription).where(Transcription.job_id == job_id))


def save_transcription(
    s: Session,
    *,
    session: RecordingSession,
    transcript: Transcript,
    source: str,
    job_id: uuid.UUID | None = None,
    audio_file_id: uuid.UUID | None = None,
    processing_time_ms: int | None = None,
    stt_model: str | None = None,
    parent_id: uuid.UUID | None = None,
) -> Transcription:
    """Store ``transcript`` as the session's new current version (the previous one stays as history)
    and set the session's language to the detected one. With ``job_id``: if that job already stored
    a transcription, that row is returned and nothing changes. Flushes; the caller commits."""
    source = TranscriptionSource(source).value  # ValueError for an unknown source
    if job_id is not None:
        existing = by_job(s, job_id)
        if existing is not None:
            return existing
    # Serialise stores for this session on PostgreSQL (SQLite has one writer anyway).
    s.execute(select(RecordingSession.id).where(RecordingSession.id == session.id).with_for_update())
    version = (
        s.scalar(
            select(func.coalesce(func.max(Transcription.version), 0)).where(
                Transcription.session_id == session.id
            )
        )
        or 0
    ) + 1
    s.execute(
        update(Transcription)
        .where(Transcription.session_id == session.id, Transcription.is_current.is_(True))
        .values(is_current=False)
    )
    language = _session_language(transcript.language)
    row = Transcription(
        session_id=session.id,
        version=version,
        is_current=True,
        source=source,
        job_id=job_id,
        audio_file_id=audio_file_id,
        parent_id=parent_id,
        content=transcript.text,
        segments=transcript.to_segments_json(),
        language=language or session.language,
        confidence_score=_confidence(transcript),
        processing_time_ms=processing_time_ms,
        stt_model=stt_model,
        status="completed",
        word_count=_word_count(transcript),
    )
    s.add(row)
    if language is not None:
        session.language = language
    if transcript.duration is not None and session.duration_seconds is None:
        session.duration_seconds = transcript.duration
    s.flush()
    return row


def store_retrying(db: Database, store: Callable[[Session], T], attempts: int = 3) -> T:
    """Run ``store(s)`` in a fresh transaction and commit; a unique-constraint race (another version
    or the same job stored meanwhile) rolls back and runs it again, at most ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            with db.session() as s:
                return store(s)
        except IntegrityError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def current_transcription(s: Session, session_id: uuid.UUID) -> Transcription | None:
    return s.scalar(
        select(Transcription).where(
            Transcription.session_id == session_id, Transcription.is_current.is_(True)
        )
    )


def list_transcriptions(s: Session, session_id: uuid.UUID) -> list[Transcription]:
    """The session's versions, newest first."""
    return list(
        s.scalars(
            select(Transcription)
            .where(Transcription.session_id == session_id)
            .order_by(Transcription.version.desc())
        )
    )


def transcript_of(row: Transcription, duration: float | None = None) -> Transcript:
    """The stored version as a :class:`Transcript` (stored order and indexes kept)."""
    return Transcript.from_segments_json(row.segments or [], language=row.language, duration=duration)


def edit_transcription(
    s: Session, *, session: RecordingSession, base: Transcription, segments: Iterable[Segment]
) -> Transcription:
    """A new current version (source ``edit``, ``parent_id`` = ``base``) with ``segments``."""
    transcript = Transcript.from_segments(segments, language=base.language, duration=session.duration_seconds)
    return save_transcription(
        s,
        session=session,
        transcript=transcript,
        source=TranscriptionSource.edit.value,
        audio_file_id=base.audio_file_id,
        stt_model=base.stt_model,
        parent_id=base.id,
    )


def patched_segments(base: Transcript, changes: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """``base``'s segments with ``changes`` applied: each names a segment by ``index`` and gives
    any of ``text``, ``speaker``, ``start_time``, ``end_time``. A new speaker goes to the segment's
    words too. Raises ``LookupError`` for an index that is not there, ``ValueError`` for bad times."""
    by_index = {seg.index: seg for seg in base.segments}
    for change in changes:
        index = int(change["index"])
        seg = by_index.get(index)
        if seg is None:
            raise LookupError(f"no segment with index {index}; indexes are 1..{len(base.segments)}")
        values: dict[str, Any] = {}
        if change.get("text") is not None:
            values["text"] = str(change["text"])
        if "speaker" in change and change["speaker"] is not None:
            speaker = " ".join(str(change["speaker"]).split()) or None
            values["speaker"] = speaker
            values["words"] = tuple(replace(w, speaker=speaker) for w in seg.words)
        if change.get("start_time") is not None:
            values["start"] = float(change["start_time"])
        if change.get("end_time") is not None:
            values["end"] = float(change["end_time"])
        by_index[index] = replace(seg, **values)  # Segment checks its times (ValueError)
    return list(by_index.values())


def rename_speaker(
    s: Session, *, session: RecordingSession, old: str, new: str
) -> tuple[Transcription, Transcription]:
    """Rename speaker ``old`` to ``new`` across the session's current transcript, as a new version.
    Returns (base, new version). ``LookupError``: no current transcript or no such speaker;
    ``ValueError``: a blank name."""
    base = current_transcription(s, session.id)
    if base is None:
        raise LookupError("this session has no transcription yet")
    renamed = rename_in_transcript(transcript_of(base), old, new)
    row = edit_transcription(s, session=session, base=base, segments=renamed.segments)
    return base, row


__all__ = [
    "SOURCES",
    "by_job",
    "current_transcription",
    "edit_transcription",
    "list_transcriptions",
    "patched_segments",
    "rename_speaker",
    "save_transcription",
    "store_retrying",
    "transcript_of",
]
