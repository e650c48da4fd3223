"""Auth modes (embedded, supabase with HS256 + JWKS), tokens, API keys."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.core.security import hash_api_key
from api.main import create_app
from api.models import ApiKey, User, UserCredential
from tests.api.conftest import JWT_SECRET, make_settings, register
from tests.api.fakes import FakeJWKS, serve

PROFILE = "/api/v1/users/profile"


# --------------------------------------------------------------------------------- embedded mode
def test_register_issues_supabase_shaped_token(client, app):
    u = register(client, "Alice@Example.com")
    claims = jwt.decode(u["token"], options={"verify_signature": False})
    assert claims["sub"] == str(u["id"])
    assert claims["aud"] == "authenticated"
    assert claims["role"] == "authenticated"
    assert claims["email"] == "alice@example.com"
    assert claims["exp"] > time.time() + 3000
    assert jwt.get_unverified_header(u["token"])["alg"] == "HS256"
    with app.state.ctx.db.session() as s:
        cred = s.get(UserCredential, u["id"])
        assert cred.password_hash.startswith("$argon2id$")
        assert "correct horse" not in cred.password_hash
    assert client.get(PROFILE, headers=u["headers"]).json()["email"] == "alice@example.com"


def test_login(client):
    register(client, "bob@example.com", password="s3cret orbit lantern")
    ok = client.post(
        "/api/v1/auth/login", json={"email": "BOB@example.com", "password": "s3cret orbit lantern"}
    )
    assert ok.status_code == 200
    assert (
        client.get(PROFILE, headers={"Authorization": f"Bearer {ok.json()['access_token']}"}).status_code
        == 200
    )
    bad = client.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "wrong-password"})
    assert bad.status_code == 401
    nobody = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    assert nobody.status_code == 401 and nobody.json() == bad.json()


def test_register_conflict_and_validation(client):
    register(client, "carol@example.com")
    assert (
        client.post(
            "/api/v1/auth/register",
            json={"email": "carol@example.com", "password": "another correct passphrase"},
        ).status_code
        == 409
    )
    assert (
        client.post(
            "/api/v1/auth/register", json={"email": "not-an-email", "password": "long-enough"}
        ).status_code
        == 422
    )
    assert (
        client.post("/api/v1/auth/register", json={"email": "d@example.com", "password": "short"}).status_code
        == 422
    )


def test_registration_can_be_disabled(tmp_path, sqlite_url):
    app = create_app(make_settings(tmp_path, database_url=sqlite_url, allow_registration=False))
    with TestClient(app) as c:
        r = c.post("/api/v1/auth/register", json={"email": "e@example.com", "password": "long-enough"})
        assert r.status_code == 403


def test_disabled_user_is_rejected(client, app):
    u = register(client)
    with app.state.ctx.db.session() as s:
        s.get(User, u["id"]).is_active = False
    assert client.get(PROFILE, headers=u["headers"]).status_code == 401


def test_token_of_deleted_user_is_rejected(client, app):
    u = register(client)
    with app.state.ctx.db.session() as s:
        s.delete(s.get(User, u["id"]))
    assert client.get(PROFILE, headers=u["headers"]).status_code == 401


# --------------------------------------------------------------------------------- supabase mode
@pytest.fixture(scope="module")
def keys():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_ec = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True) | {
        "kid": "ec-1",
        "alg": "ES256",
        "use": "sig",
    }
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True) | {
        "kid": "rsa-1",
        "alg": "RS256",
        "use": "sig",
    }
    return {"ES256": ec_key, "RS256": rsa_key, "other": other_ec, "jwks": {"keys": [ec_jwk, rsa_jwk]}}


@pytest.fixture
def supabase_client(tmp_path, sqlite_url, keys):
    fake = FakeJWKS(keys["jwks"])
    with serve(fake) as url:
        settings = make_settings(tmp_path, database_url=sqlite_url, auth_mode="supabase", supabase_url=url)
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as c:
            c.fake_jwks = fake
            yield c


def supabase_token(
    alg: str, keys, *, sub=None, aud="authenticated", exp_in=3600, kid=None, key=None, **extra
) -> str:
    now = int(time.time())
    claims = {
        "sub": str(sub or uuid.uuid4()),
        "aud": aud,
        "role": "authenticated",
        "email": f"{uuid.uuid4().hex[:6]}@supabase.test",
        "iat": now,
        "exp": now + exp_in,
        **extra,
    }
    if alg == "HS256":
        return jwt.encode(claims, key or JWT_SECRET, algorithm="HS256")
    headers = {"kid": kid or {"ES256": "ec-1", "RS256": "rsa-1"}[alg]}
    return jwt.encode(claims, key or keys[alg], algorithm=alg, headers=headers)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("alg", ["HS256", "ES256", "RS256"])
def test_supabase_tokens_verify_and_provision_profile(supabase_client, keys, alg):
    sub = uuid.uuid4()
    r = supabase_client.get(PROFILE, headers=_bearer(supabase_token(alg, keys, sub=sub)))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == str(sub)
    assert r.json()["email"].endswith("@supabase.test")


def test_supabase_rejections(supabase_client, keys):
    def status(token):
        return supabase_client.get(PROFILE, headers=_bearer(token)).status_code

    assert status(supabase_token("ES256", keys, exp_in=-120)) == 401  # expired
    assert status(supabase_token("RS256", keys, aud="anon")) == 401  # wrong audience
    assert status(supabase_token("ES256", keys, key=keys["other"])) == 401  # wrong key, right kid
    assert status(supabase_token("HS256", keys, key="not-the-project-secret-" * 2)) == 401
    assert status(supabase_token("ES256", keys, kid="unknown-kid")) == 401
    assert status(supabase_token("HS256", keys, role="anon")) == 401
    unsigned = jwt.encode(
        {"sub": str(uuid.uuid4()), "aud": "authenticated", "exp": time.time() + 60}, None, algorithm="none"
    )
    assert status(unsigned) == 401
    # algorithm confusion: HS256 "signed" with the public key from the JWKS
    pem = (
        keys["RS256"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert status(_hs256_by_hand({"kid": "rsa-1"}, pem)) == 401
    assert status("garbage") == 401


def _hs256_by_hand(header: dict, key: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    claims = {"sub": str(uuid.uuid4()), "aud": "authenticated", "exp": int(time.time()) + 60}
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', **header}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def test_supabase_mode_has_no_embedded_login(supabase_client):
    r = supabase_client.post(
        "/api/v1/auth/register", json={"email": "x@example.com", "password": "long-enough"}
    )
    assert r.status_code == 404


# ------------------------------------------------------------------------------------- API keys
def test_api_key_lifecycle(client, app, user_a):
    h = user_a["headers"]
    r = client.post("/api/v1/api-keys", json={"name": "cli", "scopes": ["sessions:read"]}, headers=h)
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith(created["prefix"])
    # shown once: listing has no secret, the database only its hash
    listed = client.get("/api/v1/api-keys", headers=h).json()
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    with app.state.ctx.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(created["id"])))
        assert row.key_hash == hash_api_key(secret)
        assert secret not in str([getattr(row, c.key) for c in ApiKey.__table__.columns])
    key_h = _bearer(secret)
    assert client.get("/api/v1/sessions/", headers=key_h).status_code == 200
    assert client.get("/api/v1/sessions/", headers={"X-API-Key": secret}).status_code == 200
    # scopes: read-only key cannot write; keys cannot manage keys
    assert client.post("/api/v1/sessions/", json={}, headers=key_h).status_code == 403
    assert client.get("/api/v1/api-keys", headers=key_h).status_code == 403
    # revoke
    assert client.delete(f"/api/v1/api-keys/{created['id']}", headers=h).status_code == 200
    assert client.get("/api/v1/sessions/", headers=key_h).status_code == 401
    assert client.get("/api/v1/api-keys", headers=h).json()[0]["revoked_at"] is not None


def test_api_key_validation_and_expiry(client, app, user_a, user_b):
    h = user_a["headers"]
    assert (
        client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=h).status_code == 422
    )
    assert client.post("/api/v1/api-keys", json={"name": "x", "scopes": []}, headers=h).status_code == 422
    r = client.post("/api/v1/api-keys", json={"name": "x", "expires_in_days": 1}, headers=h).json()
    assert client.get("/api/v1/sessions/", headers=_bearer(r["key"])).status_code == 200
    with app.state.ctx.db.session() as s:
        from datetime import timedelta

        from api.db.types import utcnow

        s.get(ApiKey, uuid.UUID(r["id"])).expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/api/v1/sessions/", headers=_bearer(r["key"])).status_code == 401
    # another user's key id: 404
    assert client.delete(f"/api/v1/api-keys/{r['id']}", headers=user_b["headers"]).status_code == 404
    assert client.get("/api/v1/sessions/", headers=_bearer("isk_deadbeef_" + "x" * 43)).status_code == 401
