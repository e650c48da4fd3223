"""Audio files: store the bytes in the blob store, describe them in ``audio_files``."""

from __future__ import annotations

import logging
import mimetypes
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.blobstore import BlobStore, blob_path
from api.models import AudioFile, RecordingSession

log = logging.getLogger("api.audio")


@dataclass(frozen=True)
class AudioInfo:
    duration_seconds: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    format: str | None = None


def probe(src: BinaryIO) -> AudioInfo:
    """Duration, rate and channels from the container header (libsndfile: WAV, FLAC, OGG, MP3...).
    Unknown formats (e.g. WebM/Opus from browsers) give an empty AudioInfo; the decoder that the
    transcription job runs (ffmpeg) handles those."""
    try:
        import soundfile

        src.seek(0)
        info = soundfile.info(src)
        duration = info.frames / info.samplerate if info.samplerate else None
        return AudioInfo(duration, int(info.samplerate), int(info.channels), str(info.format).lower())
    except Exception:
        return AudioInfo()
    finally:
        src.seek(0)


def store_audio(
    s: Session,
    blobs: BlobStore,
    session: RecordingSession,
    src: BinaryIO,
    filename: str | None,
    content_type: str | None,
) -> AudioFile:
    """Write the blob, then its row (caller commits). If the row fails, the blob is removed."""
    file_id = uuid.uuid4()
    ext = (
        PurePath(filename or "").suffix.lstrip(".")
        or (mimetypes.guess_extension(content_type or "") or ".bin")[1:]
    )
    mime = content_type or mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
    info = probe(src)
    path = blob_path(session.user_id, session.id, file_id, ext)
    stored = blobs.put(path, src, mime)
    row = AudioFile(
        id=file_id,
        session_id=session.id,
        user_id=session.user_id,
        original_filename=filename,
        storage_backend=stored.backend,
        storage_bucket=stored.bucket,
        storage_path=stored.path,
        file_size_bytes=stored.size,
        file_hash=stored.sha256,
        duration_seconds=round(info.duration_seconds, 3) if info.duration_seconds is not None else None,
        sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format or ext.lower(),
        mime_type=mime,
        upload_status="completed",
        processing_status="pending",
    )
    try:
        s.add(row)
        s.flush()
    except Exception:
        blobs.delete([stored.path])
        raise
    return row


def get_owned(s: Session, user_id: uuid.UUID, file_id: uuid.UUID) -> AudioFile | None:
    return s.scalar(select(AudioFile).where(AudioFile.id == file_id, AudioFile.user_id == user_id))


def list_for_session(s: Session, session_id: uuid.UUID) -> list[AudioFile]:
    return list(
        s.scalars(select(AudioFile).where(AudioFile.session_id == session_id).order_by(AudioFile.created_at))
    )
