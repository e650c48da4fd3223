"""A multipart upload's file part, read as it arrives.

FastAPI's ``UploadFile`` spools the whole body to a temporary file before the route (and its scope
and ownership checks) runs, and the blob store then copies it again. Instead, the upload route
checks the caller first, then this module parses the body as it streams in (python-multipart's
push parser) and hands the file part's bytes, chunk by chunk, straight to the blob store, which
counts them against the cap. Small text fields (a batch upload's ``title``, ``language``...) are
collected on the way, before or after the file part.

:func:`stream_upload` is the glue both upload routes use (sessions' ``audio_files`` and the batch
transcription): it runs the storing in a thread fed by the request body and turns the ways an
upload fails into the api's answers (422 malformed form, 413 with the limit's setting named, the
probe's own status for what is not audio).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import anyio
from fastapi import HTTPException, Request, status
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from sqlalchemy import func, select

from api.blobstore import BlobTooLarge

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.context import AppContext

T = TypeVar("T")
MAX_FIELDS = 32
MAX_FIELD_BYTES = 4096


class UploadError(ValueError):
    """The body is not a multipart form with the expected file part: the caller's mistake (422)."""


def multipart_boundary(content_type: str | None) -> bytes:
    media, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise UploadError("send the file as multipart/form-data (field audio_file)")
    return boundary


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)


class MultipartFileStream:
    """The bytes of one file field of a multipart body, pulled from ``next_chunk`` (returns b"" at
    the end of the body). Read ``filename``/``content_type`` after :meth:`start`, then iterate."""

    def __init__(self, boundary: bytes, field_name: str, next_chunk: Callable[[], bytes]):
        self.field_name = field_name
        self._next = next_chunk
        self._out: list[bytes] = []
        self._part = _Part()
        self._found: _Part | None = None
        self._in_target = False
        self._done = False
        self._header_field = b""
        self._header_value = b""
        self.fields: dict[str, str] = {}  # the form's text fields (not files) seen so far
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_cb,
                "on_header_value": self._header_value_cb,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    # ------------------------------------------------------------------ parser callbacks
    def _part_begin(self) -> None:
        self._part = _Part()

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._part.headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get(b"content-disposition", b""))
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        ctype = self._part.headers.get(b"content-type")
        self._part.content_type = ctype.decode("latin-1").strip() if ctype else None
        if self._found is None and self._part.name == self.field_name:
            self._found = self._part
            self._in_target = True
        elif self._part.filename is None and self._part.name:
            if len(self.fields) >= MAX_FIELDS:
                raise UploadError(f"the form has more than {MAX_FIELDS} fields")
            self._field_name = self._part.name
            self._field_value = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_target:
            self._out.append(bytes(data[start:end]))
        elif self._field_name is not None:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise UploadError(f"form field {self._field_name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        self._in_target = False
        if self._field_name is not None:
            try:
                self.fields[self._field_name] = self._field_value.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"form field {self._field_name!r} is not UTF-8 text") from None
            self._field_name = None

    # ------------------------------------------------------------------ reading
    def _feed(self) -> bool:
        chunk = self._next()
        if not chunk:
            self._done = True
            self._parser.finalize()
            return False
        try:
            self._parser.write(chunk)
        except UploadError:
            raise
        except Exception as e:  # python-multipart's MultipartParseError and friends
            raise UploadError(f"malformed multipart body: {e}") from None
        return True

    def start(self) -> None:
        """Read until the file part's headers have arrived (raises UploadError if it never comes)."""
        while self._found is None and self._feed():
            pass
        if self._found is None:
            raise UploadError(f"the form has no {self.field_name!r} file field")
        if self._found.filename is None:
            raise UploadError(f"{self.field_name!r} must be a file (with a filename)")

    @property
    def filename(self) -> str | None:
        return self._found.filename if self._found else None

    @property
    def content_type(self) -> str | None:
        return self._found.content_type if self._found else None

    def __iter__(self) -> Iterator[bytes]:
        while True:
            if self._out:
                data, self._out = b"".join(self._out), []
                yield data
            if self._done:
                return
            self._feed()


# ------------------------------------------------------------------------------ the routes' glue
def stored_bytes(s: Session, user_id: uuid.UUID) -> int:
    """Audio bytes the user keeps in the blob store (audio files and live recording chunks)."""
    from api.models import AudioFile, RecordingChunk

    files = s.scalar(
        select(func.coalesce(func.sum(AudioFile.file_size_bytes), 0)).where(AudioFile.user_id == user_id)
    )
    chunks = s.scalar(
        select(func.coalesce(func.sum(RecordingChunk.size_bytes), 0)).where(RecordingChunk.user_id == user_id)
    )
    return int(files or 0) + int(chunks or 0)


@dataclass(frozen=True)
class UploadLimit:
    """How many bytes this upload may have, and the setting that said so (named in the 413)."""

    max_bytes: int
    setting: str

    def too_large(self) -> HTTPException:
        what = "the file is larger than" if self.setting == "MAX_UPLOAD_BYTES" else "this upload would exceed"
        return HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"{what} the limit of {self.max_bytes} bytes ({self.setting})"
        )


def upload_limit(ctx: AppContext, user_id: uuid.UUID) -> UploadLimit:
    """The byte cap of one upload: MAX_UPLOAD_BYTES, or less when the user's stored audio is near
    MAX_STORED_BYTES_PER_USER. Raises the 413 at once when nothing is left."""
    settings = ctx.settings
    with ctx.db.session() as s:
        used = stored_bytes(s, user_id)
    left = settings.max_stored_bytes_per_user - used
    if left <= 0:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"your stored audio ({used} bytes) has reached the limit of "
            f"{settings.max_stored_bytes_per_user} bytes (MAX_STORED_BYTES_PER_USER): delete sessions first",
        )
    if left < settings.max_upload_bytes:
        return UploadLimit(left, "MAX_STORED_BYTES_PER_USER")
    return UploadLimit(settings.max_upload_bytes, "MAX_UPLOAD_BYTES")


async def stream_upload(
    request: Request, field_name: str, limit: UploadLimit, store: Callable[[MultipartFileStream], T]
) -> T:
    """Parse the request's multipart body as it arrives and run ``store(stream)`` in a worker
    thread (``stream`` yields the file part's bytes; its ``fields`` hold the text fields, complete
    once the file is read). ``store`` passes ``limit.max_bytes`` to the blob store. Answers: 422
    for a body that is not the expected form, 413 naming ``limit.setting`` past the cap, the
    probe's status (:class:`api.crud.audio.AudioRejected`) for what is not audio."""
    from api.crud.audio import AudioRejected
    from api.deps import unprocessable

    try:
        boundary = multipart_boundary(request.headers.get("content-type"))
    except UploadError as e:
        raise unprocessable(("body", field_name), str(e)) from None
    body = request.stream().__aiter__()

    async def next_chunk() -> bytes:
        try:
            return await body.__anext__()
        except StopAsyncIteration:
            return b""

    def run() -> T:
        stream = MultipartFileStream(boundary, field_name, lambda: anyio.from_thread.run(next_chunk))
        stream.start()
        return store(stream)

    try:
        return await anyio.to_thread.run_sync(run)
    except UploadError as e:
        raise unprocessable(("body", field_name), str(e)) from None
    except BlobTooLarge:
        raise limit.too_large() from None
    except AudioRejected as e:
        raise HTTPException(e.status_code, e.message) from None


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` value that downloads as ``filename`` (any characters)."""
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
