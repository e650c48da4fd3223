"""Audio blobs behind one interface: a local directory (embedded default; a shared volume in compose)
or a private Supabase Storage bucket (through supabase-py's ``storage3`` client).

Paths are ``<user_id>/<session_id>/<file_id>.<ext>``: the first segment is the owner, which is what
Supabase Storage policies key on. Writes stream from a file object and compute size and SHA-256 on
the way; nothing holds a whole recording in memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
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


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise ValueError(f"invalid blob path {path!r}")
    return path


def blob_path(user_id: uuid.UUID, session_id: uuid.UUID, file_id: uuid.UUID, ext: str) -> str:
    ext = "".join(c for c in ext.lower() if c.isalnum())[:10] or "bin"
    return f"{user_id}/{session_id}/{file_id}.{ext}"


class BlobStore(Protocol):
    backend: str
    bucket: str

    def put(self, path: str, src: BinaryIO, content_type: str = "application/octet-stream") -> StoredBlob: ...

    def download_to(self, path: str, dst: BinaryIO) -> int:
        """Copy the blob into ``dst``; returns bytes written. Raises BlobNotFound."""
        ...

    def exists(self, path: str) -> bool: ...

    def delete(self, paths: list[str]) -> None:
        """Remove blobs; missing ones are ignored."""
        ...

    def signed_url(self, path: str, expires_in: int) -> str | None:
        """A time-limited URL for direct download, or None if the backend has none (local)."""
        ...


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        h.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return size, h.hexdigest()


class LocalBlobStore:
    backend = BlobBackend.local.value

    def __init__(self, root: Path, bucket: str):
        self.bucket = bucket
        self.root = Path(root).resolve() / bucket
        self.root.mkdir(parents=True, exist_ok=True)

    def _file(self, path: str) -> Path:
        return self.root / _check_path(path)

    def put(self, path: str, src: BinaryIO, content_type: str = "application/octet-stream") -> StoredBlob:
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # write beside the target, then rename: a crash never leaves a half file under the real name
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                size, digest = _copy_hashing(src, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredBlob(self.backend, self.bucket, path, size, digest)

    def download_to(self, path: str, dst: BinaryIO) -> int:
        try:
            with open(self._file(path), "rb") as f:
                return _copy_hashing(f, dst)[0]
        except FileNotFoundError as e:
            raise BlobNotFound(path) from e

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

    def put(self, path: str, src: BinaryIO, content_type: str = "application/octet-stream") -> StoredBlob:
        _check_path(path)
        # hash while spooling to a temp file, then let storage3 stream that file up
        with tempfile.NamedTemporaryFile(prefix="blob-") as tmp:
            size, digest = _copy_hashing(src, tmp)
            tmp.flush()
            self._api().upload(path, Path(tmp.name), {"content-type": content_type, "upsert": "true"})
        return StoredBlob(self.backend, self.bucket, path, size, digest)

    def download_to(self, path: str, dst: BinaryIO) -> int:
        _check_path(path)
        self.ensure_bucket()
        # storage3's download() returns the whole body as bytes; stream the same endpoint instead.
        url = f"{self._base}object/{self.bucket}/{path}"
        with self._http.stream("GET", url) as resp:
            if resp.status_code in (400, 404):
                raise BlobNotFound(path)
            resp.raise_for_status()
            size = 0
            for chunk in resp.iter_bytes(CHUNK):
                dst.write(chunk)
                size += len(chunk)
            return size

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
