"""Audio blobs behind one interface: a local directory (embedded default; a shared volume in compose)
or a private Supabase Storage bucket (through supabase-py's ``storage3`` client).

Paths are ``<user_id>/<session_id>/<file_id>.<ext>``: the first segment is the owner, which is what
Supabase Storage policies key on. Writes stream from an iterable of byte chunks (an upload as it
arrives) straight into the store, with a byte cap, computing size and SHA-256 on the way; reads
stream out in chunks. Nothing holds a whole recording in memory or copies it to a temporary file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from api.core.config import BlobBackend, Settings

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    backend: str
    bucket: str
    path: str
    size: int
    sha256: str


class BlobNotFound(Exception):
    pass


class BlobTooLarge(Exception):
    """The source yielded more than the cap: nothing was stored."""

    def __init__(self, limit: int):
        super().__init__(f"blob is larger than {limit} bytes")
        self.limit = limit


Source = BinaryIO | Iterable[bytes]


def _chunks_of(src: Source) -> Iterator[bytes]:
    if hasattr(src, "read"):
        while chunk := src.read(CHUNK):  # type: ignore[union-attr]
            yield chunk
    else:
        yield from src  # type: ignore[misc]


class _Hashing:
    """Counts and hashes chunks as they pass; raises BlobTooLarge past ``max_bytes``."""

    def __init__(self, src: Source, max_bytes: int | None):
        self.src = src
        self.max_bytes = max_bytes
        self.size = 0
        self._h = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in _chunks_of(self.src):
            if not chunk:
                continue
            self.size += len(chunk)
            if self.max_bytes is not None and self.size > self.max_bytes:
                raise BlobTooLarge(self.max_bytes)
            self._h.update(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._h.hexdigest()


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise ValueError(f"invalid blob path {path!r}")
    return path


def blob_path(user_id: uuid.UUID, session_id: uuid.UUID, file_id: uuid.UUID, ext: str) -> str:
    ext = "".join(c for c in ext.lower() if c.isalnum())[:10] or "bin"
    return f"{user_id}/{session_id}/{file_id}.{ext}"


def chunk_path(
    user_id: uuid.UUID, session_id: uuid.UUID, track_id: uuid.UUID, seq: int, sha256: str, ext: str = "ogg"
) -> str:
    """Where a live recording's chunk lives: ``<user>/<session>/recording/<track>/<seq>-<sha16>.<ext>``.
    The track id (not the participant's identity, which is the client's text) keeps the path safe;
    the hash in the name means two different uploads of one seq never overwrite each other (the one
    that loses the race for the row deletes only its own blob)."""
    if seq < 0:
        raise ValueError("seq must be >= 0")
    ext = "".join(c for c in ext.lower() if c.isalnum())[:10] or "bin"
    return f"{user_id}/{session_id}/recording/{track_id}/{seq:08d}-{sha256[:16]}.{ext}"


class BlobStore(Protocol):
    backend: str
    bucket: str

    def put(
        self,
        path: str,
        src: Source,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredBlob:
        """Store ``src`` (a file or an iterable of chunks) as it is read. Past ``max_bytes`` raises
        BlobTooLarge and leaves nothing stored under ``path``."""
        ...

    def open_chunks(self, path: str) -> Iterator[bytes]:
        """The blob's bytes in chunks. Raises BlobNotFound at once (before the first chunk)."""
        ...

    def local_file(self, path: str) -> Path | None:
        """The blob's file on this machine, if the backend keeps one (local), else None."""
        ...

    def exists(self, path: str) -> bool: ...

    def delete(self, paths: list[str]) -> None:
        """Remove blobs; missing ones are ignored."""
        ...

    def signed_url(self, path: str, expires_in: int) -> str | None:
        """A time-limited URL for direct download, or None if the backend has none (local)."""
        ...


class LocalBlobStore:
    backend = BlobBackend.local.value

    def __init__(self, root: Path, bucket: str):
        self.bucket = bucket
        self.root = Path(root).resolve() / bucket
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # recordings: owner only
        for d in (self.root.parent, self.root):
            if d.stat().st_mode & 0o077:
                d.chmod(0o700)

    def _file(self, path: str) -> Path:
        return self.root / _check_path(path)

    def put(
        self,
        path: str,
        src: Source,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredBlob:
        target = self._file(path)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # write beside the target (0600, mkstemp's mode), then rename: a crash never leaves a half
        # file under the real name, and an over-cap upload leaves nothing.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        counted = _Hashing(src, max_bytes)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in counted:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredBlob(self.backend, self.bucket, path, counted.size, counted.sha256)

    def open_chunks(self, path: str) -> Iterator[bytes]:
        try:
            f = open(self._file(path), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as e:
            raise BlobNotFound(path) from e

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return chunks()

    def local_file(self, path: str) -> Path | None:
        return self._file(path)

    def exists(self, path: str) -> bool:
        return self._file(path).is_file()

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            f = self._file(path)
            f.unlink(missing_ok=True)
            # drop now-empty session/user folders
            for parent in (f.parent, f.parent.parent):
                try:
                    if parent != self.root:
                        parent.rmdir()
                except OSError:
                    break

    def signed_url(self, path: str, expires_in: int) -> str | None:
        return None


class SupabaseBlobStore:
    """Supabase Storage via ``storage3`` (supabase-py's client) with the service-role key."""

    backend = BlobBackend.supabase.value

    def __init__(self, storage_url: str, service_key: str, bucket: str, timeout: float = 60.0):
        import httpx
        from storage3 import SyncStorageClient

        self.bucket = bucket
        self._headers = {"apikey": service_key, "Authorization": f"Bearer {service_key}"}
        self._http = httpx.Client(headers=self._headers, timeout=timeout, follow_redirects=True)
        self._client = SyncStorageClient(storage_url, self._headers, http_client=self._http)
        self._base = storage_url if storage_url.endswith("/") else storage_url + "/"
        self._bucket_checked = False

    def ensure_bucket(self) -> None:
        """Create the bucket, private, if it does not exist (never makes an existing one public)."""
        from storage3.exceptions import StorageApiError

        if self._bucket_checked:
            return
        try:
            self._client.get_bucket(self.bucket)
        except StorageApiError as e:
            if str(getattr(e, "status", "")) not in ("400", "404"):
                raise
            self._client.create_bucket(self.bucket, options={"public": False})
        self._bucket_checked = True

    def _api(self):
        self.ensure_bucket()
        return self._client.from_(self.bucket)

    def put(
        self,
        path: str,
        src: Source,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredBlob:
        _check_path(path)
        self.ensure_bucket()
        # storage3's upload() wants a whole file or bytes; Storage's REST API takes a raw body, so
        # the chunks go up as they arrive (chunked transfer encoding), hashed and counted on the way.
        # Over the cap, the request is cut short: Storage never completes the object.
        counted = _Hashing(src, max_bytes)
        url = f"{self._base}object/{self.bucket}/{path}"
        resp = self._http.post(
            url, content=iter(counted), headers={"content-type": content_type, "x-upsert": "true"}
        )
        resp.raise_for_status()
        return StoredBlob(self.backend, self.bucket, path, counted.size, counted.sha256)

    def open_chunks(self, path: str) -> Iterator[bytes]:
        _check_path(path)
        self.ensure_bucket()
        # storage3's download() returns the whole body as bytes; stream the same endpoint instead.
        url = f"{self._base}object/{self.bucket}/{path}"
        resp = self._http.send(self._http.build_request("GET", url), stream=True)
        if resp.status_code in (400, 404):
            resp.close()
            raise BlobNotFound(path)
        try:
            resp.raise_for_status()
        except Exception:
            resp.close()
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from resp.iter_bytes(CHUNK)
            finally:
                resp.close()

        return chunks()

    def local_file(self, path: str) -> Path | None:
        return None

    def exists(self, path: str) -> bool:
        return self._api().exists(_check_path(path))

    def delete(self, paths: list[str]) -> None:
        if paths:
            self._api().remove([_check_path(p) for p in paths])

    def signed_url(self, path: str, expires_in: int) -> str | None:
        res = self._api().create_signed_url(_check_path(path), expires_in)
        return res.get("signedURL") or res.get("signedUrl")


def make_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_backend is BlobBackend.supabase:
        key = settings.supabase_service_role_key.get_secret_value()
        if not (settings.supabase_url or settings.storage_url) or not key:
            raise ValueError(
                "BLOB_BACKEND=supabase needs SUPABASE_URL (or STORAGE_URL) and SUPABASE_SERVICE_ROLE_KEY"
            )
        return SupabaseBlobStore(settings.resolved_storage_url, key, settings.storage_bucket)
    return LocalBlobStore(settings.resolved_blob_dir, settings.storage_bucket)
