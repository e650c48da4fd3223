"""A multipart upload's file part, read as it arrives.

FastAPI's ``UploadFile`` spools the whole body to a temporary file before the route (and its scope
and ownership checks) runs, and the blob store then copies it again. Instead, the upload route
checks the caller first, then this module parses the body as it streams in (python-multipart's
push parser) and hands the file part's bytes, chunk by chunk, straight to the blob store, which
counts them against the cap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header


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

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_target:
            self._out.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        self._in_target = False

    # ------------------------------------------------------------------ reading
    def _feed(self) -> bool:
        chunk = self._next()
        if not chunk:
            self._done = True
            self._parser.finalize()
            return False
        try:
            self._parser.write(chunk)
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
