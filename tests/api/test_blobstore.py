"""The blob store on both backends: a local directory, and Supabase Storage through storage3 against a
loopback server speaking Storage's REST API."""

from __future__ import annotations

import hashlib
import io
import os

import httpx
import pytest
from fastapi.testclient import TestClient
from storage3.exceptions import StorageApiError

from api.blobstore import BlobNotFound, BlobTooLarge, LocalBlobStore, SupabaseBlobStore
from api.main import create_app
from tests.api.conftest import make_settings, register
from tests.api.fakes import FakeStorage, serve
from tests.api.test_sessions import wav_bytes

SERVICE_KEY = "service-role-key-for-tests"


@pytest.fixture
def fake_storage():
    fake = FakeStorage(SERVICE_KEY)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture(params=["local", "supabase"])
def store(request, tmp_path):
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs", "audio-recordings")
    else:
        fake, url = request.getfixturevalue("fake_storage")
        s = SupabaseBlobStore(f"{url}/storage/v1/", SERVICE_KEY, "audio-recordings")
        s.fake = fake
        yield s


def test_put_get_delete(store):
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy chunk
    path = "user/session/file.wav"
    stored = store.put(path, io.BytesIO(data), "audio/wav")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.exists(path)
    assert b"".join(store.open_chunks(path)) == data
    store.put(path, iter([b"repl", b"aced"]), "audio/wav")  # overwrite (upsert), from chunks
    assert b"".join(store.open_chunks(path)) == b"replaced"
    with pytest.raises(BlobTooLarge):
        store.put(path, io.BytesIO(data), "audio/wav", max_bytes=1024)
    assert b"".join(store.open_chunks(path)) == b"replaced"  # the over-cap write left nothing
    store.delete([path, "user/session/missing.wav"])
    assert not store.exists(path)
    with pytest.raises(BlobNotFound):
        store.open_chunks(path)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs", "a//b", "a/./b", "a\\b", ""])
def test_paths_are_checked(store, bad):
    with pytest.raises(ValueError):
        store.put(bad, io.BytesIO(b"x"))


def test_supabase_bucket_is_private_and_urls_are_signed(fake_storage):
    fake, url = fake_storage
    s = SupabaseBlobStore(f"{url}/storage/v1/", SERVICE_KEY, "audio-recordings")
    s.put("u/s/f.wav", io.BytesIO(b"abc"), "audio/wav")
    assert fake.buckets["audio-recordings"]["public"] is False
    signed = s.signed_url("u/s/f.wav", 60)
    assert "token=" in signed
    assert httpx.get(signed).content == b"abc"  # no key needed: the token is the credential
    assert httpx.get(f"{url}/storage/v1/object/audio-recordings/u/s/f.wav").status_code == 403
    wrong = SupabaseBlobStore(f"{url}/storage/v1/", "wrong-key", "audio-recordings")
    with pytest.raises(StorageApiError):
        wrong.put("u/s/g.wav", io.BytesIO(b"abc"))


def test_upload_route_and_delete_on_supabase_storage(tmp_path, sqlite_url, fake_storage):
    fake, url = fake_storage
    settings = make_settings(
        tmp_path,
        database_url=sqlite_url,
        blob_backend="supabase",
        supabase_url=url,
        supabase_service_role_key=SERVICE_KEY,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        a = register(client)
        sid = client.post("/api/v1/sessions/", json={}, headers=a["headers"]).json()["id"]
        data = wav_bytes(0.5, 8000)
        r = client.post(
            f"/api/v1/sessions/{sid}/audio_files",
            files={"audio_file": ("m.wav", data, "audio/wav")},
            headers=a["headers"],
        )
        assert r.status_code == 201
        f = r.json()
        assert (
            f["storage_backend"] == "supabase" and f["sample_rate"] == 8000 and f["duration_seconds"] == 0.5
        )
        assert fake.objects[("audio-recordings", f["storage_path"])][0] == data
        link = client.get(f"/api/v1/audio-files/{f['id']}/url", headers=a["headers"]).json()
        assert link["expires_in"] == 3600 and httpx.get(link["url"]).content == data
        assert client.get(f"/api/v1/audio-files/{f['id']}/download", headers=a["headers"]).content == data
        assert client.delete(f"/api/v1/sessions/{sid}", headers=a["headers"]).status_code == 200
        assert ("audio-recordings", f["storage_path"]) not in fake.objects
