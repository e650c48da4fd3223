"""Transcription versions: the 0004 migration numbers existing rows and keeps models == migrations;
``api.crud.transcriptions`` stores versions, keeps history, is idempotent per job, edits and
renames make new versions."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from api.crud import transcriptions as tcrud
from api.db.migrate import downgrade, upgrade
from api.db.session import Database
from api.jobs.store import JobStore
from api.models import RecordingSession, Transcription, User
from speechlib.transcript import Segment, Transcript, Word
from tests.conftest import temporary_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_at_0003(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/m.db"
        upgrade(url, "0003_row_level_security")
        yield url
    else:
        with temporary_database() as url:
            upgrade(url, "0003_row_level_security")
            yield url


def test_migration_numbers_existing_transcriptions(db_at_0003):
    url = db_at_0003
    engine = sa.create_engine(url)
    user, session, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pg = engine.dialect.name == "postgresql"
    tags = "'{}'" if pg else "'[]'"

    def v(x: uuid.UUID):  # raw SQL: SQLite stores the Uuid type as 32 hex characters
        return x if pg else x.hex

    ids = [uuid.uuid4() for _ in range(4)]
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO users (id) VALUES (:u)"), {"u": v(user)})
        for sid in (session, other):
            c.execute(
                sa.text(f"INSERT INTO recording_sessions (id, user_id, tags) VALUES (:s, :u, {tags})"),
                {"s": v(sid), "u": v(user)},
            )
        # three of one session, created out of id order; one of another session
        for tid, sid, day in zip(ids, (session, session, session, other), (3, 1, 2, 1), strict=True):
            c.execute(
                sa.text("INSERT INTO transcriptions (id, session_id, created_at) VALUES (:i, :s, :t)"),
                {"i": v(tid), "s": v(sid), "t": f"2025-01-0{day} 00:00:00"},
            )
    upgrade(url)
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT id, version, is_current, source FROM transcriptions")).all()
    got = {uuid.UUID(str(r.id)): (r.version, bool(r.is_current), r.source) for r in rows}
    assert got == {
        ids[1]: (1, False, "live"),
        ids[2]: (2, False, "live"),
        ids[0]: (3, True, "live"),
        ids[3]: (1, True, "live"),
    }
    # one version number per session is enforced by the database
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as c:
        c.execute(
            sa.text("INSERT INTO transcriptions (id, session_id, version) VALUES (:i, :s, 3)"),
            {"i": v(uuid.uuid4()), "s": v(session)},
        )
    engine.dispose()
    downgrade(url, "0003_row_level_security")
    upgrade(url)


# ------------------------------------------------------------------------------- crud


def _transcript(text: str, language: str = "en", speaker: str = "SPEAKER_00") -> Transcript:
    words = [Word(0.5 + i * 0.4, 0.8 + i * 0.4, w, speaker) for i, w in enumerate(text.split())]
    seg = Segment(1, 0.5, 0.5 + 0.4 * len(words), text, speaker, language, words=tuple(words))
    return Transcript.from_segments([seg], duration=10.0)


@pytest.fixture
def db(any_db_url):
    database = Database(any_db_url)
    yield database
    database.dispose()


@pytest.fixture
def owned_session(db):
    with db.session() as s:
        user = User(email=f"{uuid.uuid4().hex}@example.com")
        s.add(user)
        s.flush()
        session = RecordingSession(user_id=user.id, language="auto")
        s.add(session)
        s.flush()
        return user.id, session.id


def test_versions_history_and_language(db, owned_session):
    user_id, session_id = owned_session
    with db.session() as s:
        session = s.get(RecordingSession, session_id)
        first = tcrud.save_transcription(
            s, session=session, transcript=_transcript("hello there"), source="batch"
        )
        assert session.language == "en"  # detected, through the one mapping
    with db.session() as s:
        session = s.get(RecordingSession, session_id)
        second = tcrud.save_transcription(
            s, session=session, transcript=_transcript("你 好", language="zh"), source="openai"
        )
    with db.session() as s:
        rows = tcrud.list_transcriptions(s, session_id)
        assert [(r.version, r.is_current, r.source) for r in rows] == [
            (2, True, "openai"),
            (1, False, "batch"),
        ]
        assert tcrud.current_transcription(s, session_id).id == second.id
        assert rows[1].id == first.id and rows[1].content == "hello there"
        assert rows[0].word_count == 2
        assert s.get(RecordingSession, session_id).language == "zh"


def test_same_job_stores_once(db, owned_session):
    user_id, session_id = owned_session
    with db.session() as s:
        job = JobStore.create(s, "transcribe", {}, user_id=user_id, session_id=session_id)
        job_id = job.id
    ids = []
    for text in ("first completion", "retried completion"):
        with db.session() as s:
            session = s.get(RecordingSession, session_id)
            ids.append(
                tcrud.save_transcription(
                    s, session=session, transcript=_transcript(text), source="batch", job_id=job_id
                ).id
            )
    assert ids[0] == ids[1]
    with db.session() as s:
        rows = s.scalars(sa.select(Transcription).where(Transcription.session_id == session_id)).all()
        assert [(r.content, r.version) for r in rows] == [("first completion", 1)]
    # the database refuses a second row for the job even past the check
    with pytest.raises(sa.exc.IntegrityError), db.session() as s:
        s.add(Transcription(session_id=session_id, version=2, job_id=job_id, source="batch"))


def test_edit_and_rename_make_versions(db, owned_session):
    _, session_id = owned_session
    with db.session() as s:
        session = s.get(RecordingSession, session_id)
        tcrud.save_transcription(
            s, session=session, transcript=_transcript("good morning all"), source="batch"
        )
    with db.session() as s:
        session = s.get(RecordingSession, session_id)
        base = tcrud.current_transcription(s, session_id)
        segments = tcrud.patched_segments(
            tcrud.transcript_of(base), [{"index": 1, "text": "good evening all"}]
        )
        edited = tcrud.edit_transcription(s, session=session, base=base, segments=segments)
        assert (edited.version, edited.source, edited.parent_id) == (2, "edit", base.id)
    with db.session() as s:
        session = s.get(RecordingSession, session_id)
        old, renamed = tcrud.rename_speaker(s, session=session, old="SPEAKER_00", new="  Alice   Smith ")
        assert old.version == 2 and renamed.version == 3
        seg = renamed.segments[0]
        assert seg["text"] == "good evening all" and seg["speaker"] == "Alice Smith"
        assert {w["speaker"] for w in seg["words"]} == {"Alice Smith"}
        with pytest.raises(LookupError):
            tcrud.rename_speaker(s, session=session, old="SPEAKER_09", new="Bob")
    with db.session() as s:
        assert [r.content for r in tcrud.list_transcriptions(s, session_id)] == [
            "good evening all",
            "good evening all",
            "good morning all",
        ]
