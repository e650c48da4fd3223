"""The LiveKit agent worker: one job per live session's room (docs/agent.md).

``build_server()`` makes the livekit-agents ``AgentServer`` (explicit dispatch under
``LIVEKIT_AGENT_NAME``; ``python -m agent start`` runs it). LiveKit assigns a job per room; each job
runs :func:`entrypoint` in its own process (livekit-agents' process pool, forkserver), so a crashed
job never takes the worker down. Per job:

1. the session: ``ctx.job.metadata`` ``{"session_id": ...}`` (the api's ``RoomAgentDispatch``), else
   the room name ``intrascribe-<session id>``;
2. the job's LiveKit token is exchanged for an agent session token (``AgentApiClient.start``); the
   api checks it names this session's room;
3. the room is joined audio-only; every participant's microphone track gets
   ``rtc.AudioStream(track, 16 kHz mono)`` -> ``SpeakerPipeline`` (VAD + ASR on Triton; segments
   to the room as ``lk.transcription`` streams and to the api) and, with ``AGENT_RECORD``, a
   ``TrackRecorder`` (Ogg/Opus chunks to the api). A leave ends that track's pipeline (its open
   utterance is flushed as a final); a rejoin is a new track: a new pipeline, and the recorder goes
   on numbering chunks by session time;
4. the status (``recording``, participant list) is PATCHed on join/leave; on shutdown every
   pipeline, recorder and publisher is closed and ``recording: false`` is sent.

Heavy modules (numpy, the Triton client, PyAV) are imported inside the job only, so the worker's
main process stays small (docs/agent.md "Memory").
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import json
import logging
import math
import os
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess, JobRequest, WorkerPermissions
from livekit.agents.worker import ServerEnvOption

from agent import metrics
from agent.config import AgentSettings, get_settings
from agent.health import HealthServer
from agent.publisher import RoomTranscriptPublisher

if TYPE_CHECKING:
    from livekit.protocol import agent as agent_pb

    from agent.api_client import AgentApiClient

log = logging.getLogger("agent.worker")

ROOM_PREFIX = "intrascribe-"  # docs/interfaces.md "Live sessions": room name = intrascribe-<session id>
SAMPLE_RATE = 16000
AGENT_PARTICIPANT_NAME = "Intrascribe"  # the agent's display name in the room

# Worker sizing. A job is one room; its process holds the room's pipelines, so the worker's load is
# its share of MAX_JOBS_PER_WORKER (deterministic, unlike livekit-agents' default: the host's CPU,
# which Triton on the same host would fill). One warm process makes the next room's start fast;
# each idle one costs an idle job process' memory.
MAX_JOBS_PER_WORKER = 10
NUM_IDLE_PROCESSES = 1
# Time a job gets to flush its open utterances, upload its last chunks and send its final status
# after the room ends (livekit-agents' default is 10 s): the pipeline waits up to 120 s for Triton
# to come back for its last finals (agent/pipeline.py DRAIN_TIMEOUT_S), the recorder 30 s for the api.
SHUTDOWN_TIMEOUT_S = 150.0
TRACK_CLOSE_TIMEOUT_S = 5.0  # an AudioStream that does not end on its own
REJOIN_WAIT_S = 35.0  # a rejoin waits this long for the previous track's recorder (it flushes <= 30 s)
PRELOAD_LOCAL_INFERENCE_ENV = "LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE"  # livekit.agents.ipc._preload


# --------------------------------------------------------------------------------------------- job


def session_id_of(job: agent_pb.Job) -> str:
    """The session a job is for: ``{"session_id": ...}`` in the dispatch metadata, else the room
    name ``intrascribe-<uuid>``. ValueError when neither names one."""
    if job.metadata:
        try:
            meta = json.loads(job.metadata)
        except ValueError:
            meta = None
        if isinstance(meta, dict) and meta.get("session_id"):
            return str(uuid.UUID(str(meta["session_id"])))
    name = job.room.name
    if name.startswith(ROOM_PREFIX):
        return str(uuid.UUID(name.removeprefix(ROOM_PREFIX)))
    raise ValueError(f"job {job.id}: no session id in its metadata and room {name!r} is not ours")


async def on_request(req: JobRequest) -> None:
    """Accept jobs for our rooms only (the api dispatches us by name, so others are mistakes)."""
    try:
        session_id_of(req.job)
    except ValueError as e:
        log.warning("rejecting job: %s", e)
        await req.reject(terminate=True)
        return
    await req.accept(name=AGENT_PARTICIPANT_NAME)


def _room_start(room: rtc.Room, job: agent_pb.Job, fallback: float) -> float:
    """Session time zero as the agent sees it (unix seconds): the room's creation time (the api
    creates the room when the session starts), else the job's room info, else ``fallback``."""
    with contextlib.suppress(Exception):
        created = room.creation_time.timestamp()
        if created > 0:
            return created
    if job.room.creation_time_ms:
        return job.room.creation_time_ms / 1000
    if job.room.creation_time:
        return float(job.room.creation_time)
    return fallback


def _is_microphone(publication: rtc.TrackPublication) -> bool:
    return (
        publication.kind == rtc.TrackKind.KIND_AUDIO
        and publication.source == rtc.TrackSource.SOURCE_MICROPHONE
    )


def _is_agent(participant: rtc.RemoteParticipant) -> bool:
    return participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


class LiveRoomSession:
    """One job's room: a pipeline (and recorder) per microphone track, the status, the shutdown.

    Built before the room is joined (so no event is missed) and :meth:`start`-ed after."""

    def __init__(self, room: rtc.Room, api: AgentApiClient, settings: AgentSettings):
        self.room = room
        self.api = api
        self.settings = settings
        self.room_start = time.time()
        self.chunk_seconds: float | None = None
        self.triton: Any = None
        self.publishers: list[Any] = []
        self.tracks: dict[str, asyncio.Task] = {}  # track sid -> its task
        self._latest: dict[str, asyncio.Task] = {}  # participant identity -> its newest track's task
        self._first_seen: dict[str, str] = {}  # identity -> ISO time we saw them join
        self._status_dirty = asyncio.Event()
        self._status_task: asyncio.Task | None = None
        self._started = False
        self._closed = False
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_unsubscribed", self._on_track_unsubscribed)
        room.on("participant_connected", self._on_participants_changed)
        room.on("participant_disconnected", self._on_participants_changed)

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, room_start: float, chunk_seconds: float | None) -> None:
        """The room is joined: transcribe what is already published, report the status."""
        from agent.api_client import ApiSegmentPublisher
        from inference_client import TritonClient

        self.room_start = room_start
        self.chunk_seconds = chunk_seconds
        self.triton = TritonClient(url=self.settings.triton_grpc_url)
        self.publishers = [
            RoomTranscriptPublisher(self.room.local_participant),
            ApiSegmentPublisher(self.api),
        ]
        self._started = True
        metrics.ACTIVE_SESSIONS.inc()
        self._status_task = asyncio.create_task(self._status_loop(), name="agent-status")
        self._status_dirty.set()
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None and publication.subscribed:
                    self._on_track_subscribed(publication.track, publication, participant)

    async def aclose(self) -> None:
        """End of the job: every track's pipeline and recorder closed (open utterances become
        finals, last chunks uploaded), publishers closed, ``recording: false`` sent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self.tracks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._status_task is not None:
            self._status_task.cancel()
            await asyncio.gather(self._status_task, return_exceptions=True)
        for publisher in self.publishers:
            try:
                await publisher.aclose()
            except Exception:
                log.exception("closing %s failed", type(publisher).__name__)
        if self._started:
            try:
                await self.api.patch_status(recording=False, participants=[])
            except Exception as e:  # noqa: BLE001 - best effort at the end
                log.warning("final status not sent: %r", e)
            metrics.ACTIVE_SESSIONS.dec()
        await self.api.aclose()
        if self.triton is not None:
            await self.triton.close()

    # ------------------------------------------------------------------ tracks
    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if not self._started or self._closed or not _is_microphone(publication) or _is_agent(participant):
            return
        sid = publication.sid
        if sid in self.tracks and not self.tracks[sid].done():
            return
        previous = self._latest.get(participant.identity)
        task = asyncio.create_task(self._run_track(track, sid, participant, previous), name=f"track-{sid}")
        self.tracks[sid] = self._latest[participant.identity] = task

    def _on_track_unsubscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        task = self.tracks.get(publication.sid)
        if task is not None and not task.done():
            task.cancel()  # its finally closes the pipeline (flush) and the recorder

    async def _run_track(
        self,
        track: rtc.Track,
        track_sid: str,
        participant: rtc.RemoteParticipant,
        previous: asyncio.Task | None = None,
    ) -> None:
        from agent.audio_in import track_samples
        from agent.pipeline import SpeakerPipeline
        from agent.recorder import TrackRecorder

        identity = participant.identity
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        pipeline = recorder = None
        log.info("transcribing %s (track %s)", identity, track_sid)
        try:
            async for samples in track_samples(stream):
                if pipeline is None:
                    # session time of this track's first sample: now, less the audio that came with it
                    offset_s = max(0.0, time.time() - self.room_start - samples.size / SAMPLE_RATE)
                    pipeline = SpeakerPipeline(
                        triton=self.triton,
                        settings=self.settings,
                        speaker=identity,
                        speaker_name=participant.name or None,
                        track_sid=track_sid,
                        offset_s=offset_s,
                        publishers=self.publishers,
                    )
                    if self.settings.agent_record and self.chunk_seconds:
                        if previous is not None and not previous.done():
                            # a rejoin: the previous track's recorder uploads its last (partial) chunk
                            # first, so the new one's listing sees it (no 409 on a shared seq);
                            # frames queue in the AudioStream meanwhile
                            await asyncio.wait({previous}, timeout=REJOIN_WAIT_S)
                        recorder = TrackRecorder(
                            self.api, identity, chunk_seconds=self.chunk_seconds, offset_s=offset_s
                        )
                    metrics.ACTIVE_PARTICIPANTS.inc()
                await pipeline.push(samples)
                if recorder is not None:
                    await recorder.push(samples)
        except asyncio.CancelledError:
            pass  # left the room, or the job ends
        except Exception:
            log.exception("track %s of %s failed", track_sid, identity)
        finally:
            try:
                await asyncio.wait_for(stream.aclose(), TRACK_CLOSE_TIMEOUT_S)
            except (Exception, asyncio.CancelledError) as e:
                log.debug("audio stream of %s did not close cleanly: %r", track_sid, e)
            parts = [part for part in (pipeline, recorder) if part is not None]
            # together: the pipeline may wait for Triton, the recorder for the api
            for part, result in zip(
                parts,
                await asyncio.gather(*(p.aclose() for p in parts), return_exceptions=True),
                strict=True,
            ):
                if isinstance(result, BaseException):
                    log.error("closing the %s of %s failed: %r", type(part).__name__, identity, result)
            if pipeline is not None:
                metrics.ACTIVE_PARTICIPANTS.dec()
                log.info(
                    "track %s of %s ended after %.1f s of audio",
                    track_sid,
                    identity,
                    pipeline.samples_received / SAMPLE_RATE,
                )

    # ------------------------------------------------------------------ status
    def _on_participants_changed(self, participant: rtc.RemoteParticipant) -> None:
        self._status_dirty.set()

    def participants(self) -> list[dict[str, Any]]:
        """The status' participant list: everyone in the room but agents."""
        out = []
        for p in self.room.remote_participants.values():
            if _is_agent(p):
                continue
            joined = p.joined_at.isoformat() if p.joined_at else None
            if joined is None:
                joined = self._first_seen.setdefault(p.identity, dt.datetime.now(dt.timezone.utc).isoformat())
            out.append({"identity": p.identity, "name": p.name or None, "joined_at": joined})
        return out

    async def _status_loop(self) -> None:
        """Sends the latest status after each change (one PATCH at a time; a failed one is retried)."""
        from agent.api_client import ApiClosedError

        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            try:
                await self.api.patch_status(recording=True, participants=self.participants())
            except ApiClosedError:
                return
            except Exception as e:  # noqa: BLE001 - the api client retried already; try again later
                log.warning("status not sent, retrying: %r", e)
                await asyncio.sleep(2.0)
                self._status_dirty.set()


async def entrypoint(ctx: JobContext) -> None:
    """One live session's room (module docstring). Raising ends this job (its process) only."""
    from agent.api_client import AgentApiClient

    settings = get_settings()
    session_id = session_id_of(ctx.job)
    ctx.log_context_fields = {"session_id": session_id, "room": ctx.job.room.name}
    # The job's LiveKit token (what LiveKit's server assigned; livekit-agents keeps it on the job's
    # RunningJobInfo and has no public accessor for it): the agent's proof for the api.
    api = AgentApiClient(settings.agent_api_url, ctx._info.token)
    session = LiveRoomSession(ctx.room, api, settings)
    ctx.add_shutdown_callback(session.aclose)  # also runs when this entrypoint raises

    await api.start(wait=True)  # an api that is down at the job's start is waited for, not fatal
    importlib.import_module(PIPELINE_MODULE)  # now, not while the first participant's audio flows
    if api.session_id != session_id:
        raise RuntimeError(f"dispatched for session {session_id} but the job token is for {api.session_id}")
    log.info("agent token for session %s (identity %s)", session_id, api.identity)
    chunk_seconds = None
    if settings.agent_record:
        chunk_seconds = float((await api.get_recording())["chunk_seconds"])

    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    session.start(
        room_start=_room_start(ctx.room, ctx.job, fallback=time.time()), chunk_seconds=chunk_seconds
    )
    log.info("joined %s: %d participant(s)", ctx.job.room.name, len(ctx.room.remote_participants))


# ------------------------------------------------------------------------------------------ server


# imported by each job process before it gets a job (prewarm)
JOB_MODULES = ("agent.api_client", "agent.audio_in", "agent.recorder", "inference_client.client")
# imported by a job when it starts, before it joins the room: agent.pipeline pulls in
# speechlib.transcript -> speechlib.diarization (~80 MB RSS, ~1 s), which would put an idle job
# process over its memory bound (docs/agent.md "Memory")
PIPELINE_MODULE = "agent.pipeline"


def prewarm(proc: JobProcess) -> None:
    """Each job process, before it gets a job: import what a job uses (numpy, the Triton client,
    PyAV, httpx), so a room's start does not wait for it. Not in the main process, and not in
    livekit-agents' forkserver (gRPC must not be loaded before a fork)."""
    for name in JOB_MODULES:
        importlib.import_module(name)


def _load(server: AgentServer) -> float:
    return min(1.0, len(server.active_jobs) / MAX_JOBS_PER_WORKER)


class IntrascribeAgentServer(AgentServer):
    """livekit-agents' server plus our HTTP endpoint (``/``, ``/worker``, ``/metrics`` on
    ``AGENT_HTTP_PORT``; agent/health.py). livekit-agents' own health server runs on a loopback
    port of its choosing behind it."""

    def __init__(self, *, http_host: str, http_port: int, **kwargs: Any):
        super().__init__(host="127.0.0.1", port=0, **kwargs)
        self.health = HealthServer(http_host, http_port, upstream_port=lambda: self.worker_info.http_port)

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        # livekit-agents' forkserver would load its local VAD and end-of-turn models (~250 MB, which
        # every job process maps) for its voice agents; ours uses Triton's
        os.environ.setdefault(PRELOAD_LOCAL_INFERENCE_ENV, "0")
        await self.health.start()
        log.info("health and metrics on http://%s:%d/", self.health.host or "0.0.0.0", self.health.port)
        try:
            await super().run(devmode=devmode, unregistered=unregistered)
        finally:
            await self.health.aclose()

    async def aclose(self) -> None:
        await super().aclose()
        await self.health.aclose()  # before the runner cancels what is left


def metrics_dir() -> str:
    """Where job processes write their Prometheus samples (prometheus_client multiprocess mode):
    ``PROMETHEUS_MULTIPROC_DIR`` if set, else a fresh temporary directory."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="intrascribe-agent-metrics-")


def build_server(settings: AgentSettings | None = None, *, http_host: str = "") -> IntrascribeAgentServer:
    settings = settings or get_settings()
    server = IntrascribeAgentServer(
        http_host=http_host,
        http_port=settings.agent_http_port,
        ws_url=settings.livekit_url or None,
        api_key=settings.livekit_api_key or None,
        api_secret=settings.livekit_api_secret.get_secret_value() or None,
        num_idle_processes=ServerEnvOption(dev_default=0, prod_default=NUM_IDLE_PROCESSES),
        load_fnc=_load,
        load_threshold=ServerEnvOption(dev_default=math.inf, prod_default=1.0),
        shutdown_process_timeout=SHUTDOWN_TIMEOUT_S,
        job_memory_warn_mb=500,
        permissions=WorkerPermissions(can_publish=False, can_subscribe=True, can_publish_data=True),
        prometheus_multiproc_dir=metrics_dir(),
        setup_fnc=prewarm,
    )
    server.rtc_session(entrypoint, agent_name=settings.livekit_agent_name, on_request=on_request)
    return server
