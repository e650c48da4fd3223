"""The whole live path against a real LiveKit server: runs only when ``LIVEKIT_URL``,
``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` name one (e.g. ``livekit-server --dev``: ws://127.0.0.1:7880,
``devkey`` / ``secret`` padded to 32 bytes with ``--keys``); no LiveKit server runs on the CI machine,
where the rest of tests/agent/ stands in for it at the protocol boundary.

A real api (loopback uvicorn, LiveKit settings from the environment, a unique agent name) creates the
session and dispatches; the real worker (``python -m agent start``) joins; a participant (this test,
``rtc.Room``) publishes a microphone and speaks two ASR fixture clips in real time. Checked: the
``lk.transcription`` text streams the room receives (sender = the speaker, the transcribed track id,
finals) and the live transcript the api stored, both exactly the clips' labels.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from livekit import rtc

from api.db.migrate import upgrade
from api.main import create_app
from speechlib.interfaces import SAMPLE_RATE
from tests.agent.pipeline_helpers import track
from tests.agent.worker_helpers import agent_worker
from tests.api.conftest import LoopbackServer, make_settings
from tests.skips import skip_unavailable

REPO = Path(__file__).resolve().parents[2]
URL, KEY, SECRET = (os.environ.get(k, "") for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (URL and KEY and SECRET),
        reason=skip_unavailable("livekit-server", "set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET"),
    ),
]
FRAME = SAMPLE_RATE // 50  # 20 ms


async def _speak(source: rtc.AudioSource, x: np.ndarray) -> None:
    """Real time: capture_frame paces itself on the source's queue."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    for i in range(0, pcm.size - FRAME + 1, FRAME):
        await source.capture_frame(rtc.AudioFrame(pcm[i : i + FRAME].tobytes(), SAMPLE_RATE, 1, FRAME))


async def _until(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_spoken_meeting_reaches_the_room_and_the_api(tmp_path, agent_triton, speech_clips):
    agent_name = f"intrascribe-test-{secrets.token_hex(4)}"  # no other worker takes the dispatch
    db = f"sqlite:///{tmp_path}/api.db"
    upgrade(db)
    settings = make_settings(
        tmp_path,
        database_url=db,
        livekit_url=URL,
        livekit_api_key=KEY,
        livekit_api_secret=SECRET,
        livekit_agent_name=agent_name,
    )
    with LoopbackServer(create_app(settings)) as api:
        env = {
            "LIVEKIT_AGENT_NAME": agent_name,
            "AGENT_API_URL": api.url,
            "AGENT_HTTP_PORT": "0",
            "TRITON_GRPC_URL": agent_triton.ports.grpc_url,
        }
        with agent_worker(tmp_path, env, stop_timeout=60):
            asyncio.run(_meeting(api.url, speech_clips))


async def _meeting(api_url: str, clips: dict[str, np.ndarray]) -> None:
    texts = list(clips)
    audio, _ = track(1.0, clips[texts[0]], 2.0, clips[texts[1]], 3.0)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        user = await http.post(
            "/api/v1/auth/register", json={"email": "ada@example.com", "password": "correct horse battery"}
        )
        assert user.status_code == 201, user.text
        headers = {"Authorization": f"Bearer {user.json()['access_token']}"}
        details = await http.post("/api/v1/livekit/connection-details", json={}, headers=headers)
        assert details.status_code == 200, details.text
        d = details.json()

        room = rtc.Room()
        received: list[tuple[str, dict[str, str], str]] = []
        reading: set[asyncio.Task] = set()

        def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                received.append((sender, dict(reader.info.attributes or {}), await reader.read_all()))

            task = asyncio.ensure_future(read())
            reading.add(task)
            task.add_done_callback(reading.discard)

        room.register_text_stream_handler("lk.transcription", on_text)
        await room.connect(d["serverUrl"], d["participantToken"])
        try:

            async def agent_joined():
                return any(
                    p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                    for p in room.remote_participants.values()
                )

            await _until("the agent to join the room", agent_joined, 90)
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            mic = rtc.LocalAudioTrack.create_audio_track("microphone", source)
            publication = await room.local_participant.publish_track(
                mic, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            )
            await asyncio.sleep(1.0)  # the agent subscribes
            await _speak(source, audio)

            def finals() -> list[tuple[str, dict[str, str], str]]:
                return [r for r in received if r[1].get("lk.transcription_final") == "true"]

            async def both_final():
                return len(finals()) >= 2

            await _until("two finals in the room", both_final, 60)
            me = d["participantIdentity"]
            assert [text for _, _, text in finals()] == texts
            for sender, attributes, _ in finals():
                assert sender == me
                assert attributes["lk.transcribed_track_id"] == publication.sid

            async def stored():
                r = await http.get(
                    f"/api/v1/realtime/sessions/{d['sessionId']}/transcription", headers=headers
                )
                segs = [s for s in r.json()["segments"] if s["is_final"]]
                return segs if len(segs) >= 2 else None

            segments = await _until("two finals in the api", stored, 30)
            assert [s["text"] for s in segments] == texts
            assert {s["speaker"] for s in segments} == {me}
        finally:
            await room.disconnect()
