"""Audio files: store the bytes in the blob store, describe them in ``audio_files``."""

from __future__ import annotations

import io
import logging
import math
import mimetypes
import re
import uuid
from collections.abc import Iterable, Iterator
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


class AudioRejected(ValueError):
    """The upload is not audio we can transcribe (not a container FFmpeg reads, no audio stream,
    empty, too short...). Nothing was kept. ``status_code``: the HTTP status the api answers (415 for
    what is not audio at all, 422 for audio that cannot work); ``code``: a stable name for clients."""

    def __init__(self, code: str, message: str, status_code: int = 415):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code


PROBE_HEAD_BYTES = 256 * 1024
MAX_DURATION_SECONDS = 9_999_999.0  # the column is NUMERIC(10, 3); a forged header may claim more
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,40}/[A-Za-z0-9!#$&^_.+-]{1,59}$")


def _plausible(duration: float | None) -> bool:
    return duration is not None and math.isfinite(duration) and 0 <= duration <= MAX_DURATION_SECONDS


def probe(src: BinaryIO) -> AudioInfo:
    """Duration, rate and channels from the container header (libsndfile: WAV, FLAC, OGG, MP3...).
    Unknown formats (e.g. WebM/Opus from browsers) give an empty AudioInfo; nothing here decodes
    audio (the transcription job will)."""
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


def _keeping_head(chunks: Iterable[bytes], head: bytearray) -> Iterator[bytes]:
    for chunk in chunks:
        if len(head) < PROBE_HEAD_BYTES:
            head += chunk[: PROBE_HEAD_BYTES - len(head)]
        yield chunk


def _probe_stored(blobs: BlobStore, path: str, head: bytes) -> AudioInfo:
    local = blobs.local_file(path)
    if local is not None:
        with open(local, "rb") as f:
            return probe(f)
    return probe(io.BytesIO(head))  # remote store: the header is in the first bytes


def store_audio(
    s: Session,
    blobs: BlobStore,
    session: RecordingSession,
    chunks: Iterable[bytes],
    filename: str | None,
    content_type: str | None,
    max_bytes: int | None = None,
) -> AudioFile:
    """Stream the bytes into the blob store (BlobTooLarge past ``max_bytes``: nothing stored), then
    write its row (caller commits). If the row fails, the blob is removed."""
    file_id = uuid.uuid4()
    # what the client said is stored and shown back: keep it storable and within the columns
    filename = _UNSTORABLE.sub("", filename)[:500] if filename else None
    if content_type and not _MEDIA_TYPE.match(content_type):
        content_type = None
    ext = (
        PurePath(filename or "").suffix.lstrip(".")
        or (mimetypes.guess_extension(content_type or "") or ".bin")[1:]
    )
    mime = content_type or mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
    path = blob_path(session.user_id, session.id, file_id, ext)
    head = bytearray()
    stored = blobs.put(path, _keeping_head(chunks, head), mime, max_bytes=max_bytes)
    info = _probe_stored(blobs, stored.path, bytes(head))
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
        duration_seconds=round(info.duration_seconds, 3) if _plausible(info.duration_seconds) else None,
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
