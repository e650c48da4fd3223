"""Audio files: store the bytes in the blob store, describe them in ``audio_files``."""

from __future__ import annotations

import contextlib
import logging
import math
import mimetypes
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.blobstore import BlobStore, blob_path
from api.media import media
from api.models import AudioFile, RecordingChunk, RecordingSession, RecordingTrack
from inference_client.audio import AudioDecodeError, check_audio

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


# inference_client.audio.AudioDecodeError.code -> the upload's answer (docs/bad-input.md): 415 for
# what is not audio at all, 422 for a file that is audio but cannot be transcribed.
REJECTION_STATUS = {
    "empty_file": 415,
    "not_audio": 415,
    "no_audio_stream": 415,
    "corrupt_audio": 422,
    "no_samples": 422,
    "too_short": 422,
    "non_finite_samples": 422,
}

MAX_DURATION_SECONDS = 9_999_999.0  # the column is NUMERIC(10, 3)
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,40}/[A-Za-z0-9!#$&^_.+-]{1,59}$")


def _plausible(duration: float | None) -> bool:
    return duration is not None and math.isfinite(duration) and 0 <= duration <= MAX_DURATION_SECONDS


def probe(path: str | Path, ext: str = "") -> AudioInfo:
    """What an upload is, from the file itself (inference_client.audio.check_audio, PyAV: every
    container FFmpeg reads): duration measured on its packets (not its header's claim), rate,
    channels, and the container's name (``ext`` when it is one of FFmpeg's names for the container,
    e.g. "m4a" for "mov,mp4,m4a,3gp,3g2,mj2"). Raises :class:`AudioRejected` for what is not
    transcribable audio (the reason and a stable code in it)."""
    try:
        info = media.run(check_audio, path)  # in a media process (api.media)
    except AudioDecodeError as e:
        # "code: reason", as a failed job's error reads (the route answers the message)
        raise AudioRejected(e.code, f"{e.code}: {e}", REJECTION_STATUS.get(e.code, 422)) from None
    names = info.format.split(",")
    fmt = ext.lower() if ext.lower() in names else names[0]
    return AudioInfo(
        round(info.duration_s, 3) if _plausible(info.duration_s) else None,
        info.sample_rate or None,
        info.channels or None,
        fmt[:32],
    )


def _copying(chunks: Iterable[bytes], out) -> Iterator[bytes]:
    for chunk in chunks:
        out.write(chunk)
        yield chunk
    out.flush()  # all of it is on disk before the probe reads it


@contextlib.contextmanager
def _probe_copy(blobs: BlobStore, path: str, chunks: Iterable[bytes]):
    """``(chunks to store, the file to probe once stored)``: the stored file itself when the store
    keeps one here (local), else a temporary copy written as the bytes stream to the store (a remote
    store: no second download, and the probe sees the whole file, not only its head)."""
    local = blobs.local_file(path)
    if local is not None:
        yield chunks, local
        return
    fd, tmp = tempfile.mkstemp(prefix="intrascribe-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            yield _copying(chunks, out), Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def store_audio(
    s: Session,
    blobs: BlobStore,
    session: RecordingSession,
    chunks: Iterable[bytes],
    filename: str | None,
    content_type: str | None,
    max_bytes: int | None = None,
    file_id: uuid.UUID | None = None,
) -> AudioFile:
    """Stream the bytes into the blob store (BlobTooLarge past ``max_bytes``: nothing stored), check
    them (:func:`probe`; :class:`AudioRejected` for what is not transcribable audio: the blob is
    deleted first, nothing is kept), then write its row (caller commits). If the row fails, the blob
    is removed. ``file_id``: the row's id when the caller fixes it (a live session's mix: one per
    session), else a new one."""
    file_id = file_id or uuid.uuid4()
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
    with _probe_copy(blobs, path, chunks) as (stream, copy):
        stored = blobs.put(path, stream, mime, max_bytes=max_bytes)
        try:
            info = probe(copy, ext)
        except BaseException:
            blobs.delete([stored.path])
            raise
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
        duration_seconds=info.duration_seconds,
        sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format,
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


# ------------------------------------------------------------------------- live recording chunks
# A live session's audio arrives as fixed-length chunks per participant (api/recording.py): one
# ``recording_tracks`` row per participant, one ``recording_chunks`` row per uploaded chunk.


def get_track(s: Session, session_id: uuid.UUID, participant: str) -> RecordingTrack | None:
    return s.scalar(
        select(RecordingTrack).where(
            RecordingTrack.session_id == session_id, RecordingTrack.participant == participant
        )
    )


def tracks_of_session(s: Session, session_id: uuid.UUID) -> list[RecordingTrack]:
    """The session's tracks, in the order their first chunk arrived."""
    return list(
        s.scalars(
            select(RecordingTrack)
            .where(RecordingTrack.session_id == session_id)
            .order_by(RecordingTrack.created_at, RecordingTrack.participant)
        )
    )


def get_chunk(s: Session, track_id: uuid.UUID, seq: int) -> RecordingChunk | None:
    return s.scalar(
        select(RecordingChunk).where(RecordingChunk.track_id == track_id, RecordingChunk.seq == seq)
    )


def chunks_of_track(s: Session, track_id: uuid.UUID) -> list[RecordingChunk]:
    return list(
        s.scalars(
            select(RecordingChunk).where(RecordingChunk.track_id == track_id).order_by(RecordingChunk.seq)
        )
    )


def chunk_paths_of_session(s: Session, session_id: uuid.UUID) -> list[str]:
    """The blob paths of the session's chunks (to delete them with the session)."""
    return list(s.scalars(select(RecordingChunk.storage_path).where(RecordingChunk.session_id == session_id)))
