"""Summary templates: CRUD of one's own, the seeded system templates readable by everyone and
read-only (copy to change), the user's default (preferences), and which template a summary uses:
the one asked for, else the session's, else the user's default, else the system default."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import register
from tests.api.fake_llm import FakeLLM, model_entry, write_config
from tests.api.summary_env import env_factory
from tests.api.test_summaries import _answer, _segments


@pytest.fixture
def make_env(tmp_path, sqlite_url):
    with env_factory(tmp_path, sqlite_url) as make:
        yield make


SYSTEM_NAMES = {"通用会议纪要", "访谈要点提炼", "技术评审结论"}


def test_system_templates_are_listed_for_everyone_and_read_only(client, user_a, user_b):
    for user in (user_a, user_b):
        r = client.get("/api/v1/templates/", headers=user["headers"])
        assert r.status_code == 200
        system = [t for t in r.json() if t["is_system_template"]]
        assert {t["name"] for t in system} == SYSTEM_NAMES
    general = next(t for t in system if t["name"] == "通用会议纪要")
    assert general["is_default"] and general["user_id"] is None
    tid = general["id"]
    assert client.get(f"/api/v1/templates/{tid}", headers=user_a["headers"]).json()["id"] == tid
    r = client.put(f"/api/v1/templates/{tid}", json={"name": "mine now"}, headers=user_a["headers"])
    assert r.status_code == 403 and "copy" in r.json()["detail"]
    assert client.delete(f"/api/v1/templates/{tid}", headers=user_a["headers"]).status_code == 403
    # copy-to-mine: an own template with the same outline, editable
    r = client.post(f"/api/v1/templates/{tid}/copy", headers=user_a["headers"])
    assert r.status_code == 201, r.text
    copy = r.json()
    assert copy["user_id"] == str(user_a["id"]) and not copy["is_system_template"]
    assert copy["template_content"] == general["template_content"] and copy["id"] != tid
    r = client.put(f"/api/v1/templates/{copy['id']}", json={"name": "edited"}, headers=user_a["headers"])
    assert r.status_code == 200 and r.json()["name"] == "edited"
    assert r.json()["template_content"] == general["template_content"]
    unchanged = client.get(f"/api/v1/templates/{tid}", headers=user_b["headers"]).json()
    assert unchanged["name"] == "通用会议纪要"


def test_own_templates_crud_and_isolation(client, user_a, user_b):
    body = {
        "name": "Standup",
        "template_content": "## Done {who}\n\n## Next\n\n## Blockers {who} {when}\n",
        "category": "meeting",
        "tags": ["daily"],
    }
    r = client.post("/api/v1/templates/", json=body, headers=user_a["headers"])
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["placeholders"] == ["who", "when"] and t["tags"] == ["daily"] and t["usage_count"] == 0
    tid = t["id"]
    names = [x["name"] for x in client.get("/api/v1/templates/", headers=user_a["headers"]).json()]
    assert "Standup" in names
    names_b = [x["name"] for x in client.get("/api/v1/templates/", headers=user_b["headers"]).json()]
    assert "Standup" not in names_b
    for method, kwargs in (("get", {}), ("put", {"json": {"name": "x"}}), ("delete", {})):
        r = getattr(client, method)(f"/api/v1/templates/{tid}", headers=user_b["headers"], **kwargs)
        assert r.status_code == 404, (method, r.text)
    r = client.put(f"/api/v1/templates/{tid}", json={"is_active": False}, headers=user_a["headers"])
    assert r.status_code == 200 and r.json()["is_active"] is False and r.json()["name"] == "Standup"
    listed = client.get("/api/v1/templates/", headers=user_a["headers"]).json()
    assert tid not in [x["id"] for x in listed]
    listed = client.get("/api/v1/templates/?include_inactive=true", headers=user_a["headers"]).json()
    assert tid in [x["id"] for x in listed]
    for bad in ({"name": ""}, {"template_content": ""}, {"name": "x", "template_content": "y", "owner": 1}):
        r = client.post("/api/v1/templates/", json=bad, headers=user_a["headers"])
        assert r.status_code == 422, bad
    assert (
        client.put(f"/api/v1/templates/{tid}", json={"name": None}, headers=user_a["headers"]).status_code
        == 422
    )
    assert client.delete(f"/api/v1/templates/{tid}", headers=user_a["headers"]).status_code == 204
    assert client.get(f"/api/v1/templates/{tid}", headers=user_a["headers"]).status_code == 404
    assert client.get(f"/api/v1/templates/{uuid.uuid4()}", headers=user_a["headers"]).status_code == 404


def test_user_default_template_in_preferences(client, user_a):
    r = client.post(
        "/api/v1/templates/", json={"name": "d", "template_content": "## A\n"}, headers=user_a["headers"]
    )
    tid = r.json()["id"]
    r = client.put(f"/api/v1/templates/{tid}/default", headers=user_a["headers"])
    assert r.status_code == 200 and r.json()["is_user_default"] is True
    prefs = client.get("/api/v1/users/profile", headers=user_a["headers"]).json()["preferences"]
    assert prefs["default_template_id"] == tid
    flagged = [
        t["id"]
        for t in client.get("/api/v1/templates/", headers=user_a["headers"]).json()
        if t["is_user_default"]
    ]
    assert flagged == [tid]
    # deleting the default clears the preference (the system default applies again)
    assert client.delete(f"/api/v1/templates/{tid}", headers=user_a["headers"]).status_code == 204
    prefs = client.get("/api/v1/users/profile", headers=user_a["headers"]).json()["preferences"]
    assert prefs.get("default_template_id") is None


def test_api_key_scopes(client, user_a):
    r = client.post(
        "/api/v1/api-keys", json={"name": "ro", "scopes": ["templates:read"]}, headers=user_a["headers"]
    )
    assert r.status_code == 201, r.text
    key = {"X-API-Key": r.json()["key"]}
    assert client.get("/api/v1/templates/", headers=key).status_code == 200
    r = client.post("/api/v1/templates/", json={"name": "x", "template_content": "y"}, headers=key)
    assert r.status_code == 403


def test_which_template_a_summary_uses(tmp_path, make_env):
    with FakeLLM(lambda m: _answer()) as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake)]))

        def create(content: str) -> str:
            r = env.client.post(
                "/api/v1/templates/", json={"name": content, "template_content": content}, headers=env.h
            )
            return r.json()["id"]

        def outline_sent() -> str:
            system = fake.prompts()[-1][0]["content"]
            return system.split("<outline>\n", 1)[1].split("\n</outline>", 1)[0]

        asked, on_session, preferred = create("## ASKED\n"), create("## SESSION\n"), create("## PREFERRED\n")
        sid = env.session(_segments())
        # no template anywhere: the system default
        assert env.summarize(sid)["status"] == "completed"
        system = [
            t for t in env.client.get("/api/v1/templates/", headers=env.h).json() if t["is_system_template"]
        ]
        default = next(t for t in system if t["is_default"])
        assert outline_sent() == default["template_content"].strip()
        # the user's default beats the system default
        env.client.put(f"/api/v1/templates/{preferred}/default", headers=env.h)
        env.summarize(sid)
        assert outline_sent() == "## PREFERRED"
        # the session's template beats the user's default
        r = env.client.patch(f"/api/v1/sessions/{sid}", json={"template_id": on_session}, headers=env.h)
        assert r.status_code == 200, r.text
        env.summarize(sid)
        assert outline_sent() == "## SESSION"
        # the one asked for beats them all; the summary records it and the template's usage counts
        env.summarize(sid, template_id=asked)
        assert outline_sent() == "## ASKED"
        latest = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h).json()
        assert latest["template_id"] == asked
        assert env.client.get(f"/api/v1/templates/{asked}", headers=env.h).json()["usage_count"] == 1
        # another user's template cannot be used
        other = register(env.client)
        r = env.client.post(
            "/api/v1/templates/",
            json={"name": "theirs", "template_content": "## T\n"},
            headers=other["headers"],
        )
        r = env.client.post(
            f"/api/v1/sessions/{sid}/summary", json={"template_id": r.json()["id"]}, headers=env.h
        )
        assert r.status_code == 404
