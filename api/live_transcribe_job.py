"""The ``live_transcribe`` job: a finalized live session re-transcribed track by track.

Started by finalize (``POST /api/v1/sessions/{id}/finalize`` with ``retranscribe: true``). Each
participant's own track (their chunks, gaps as silence: :func:`api.recording.render_track`) goes
through the batch transcriber (VAD + ASR on Triton, :class:`inference_client.transcription.Transcriber`)
on its own; the participant is the speaker. Diarization inside a track runs only with
``diarize: true`` (then a speaker is ``<participant>/<local label>``). Segment times are moved by the
track's offset onto the session's timeline; all tracks' segments, in time order, are stored as a new
version (source ``batch``, the mix as its audio file) through ``save_transcription`` (once per job:
``job_id`` is unique), and the owner's auto-summary is queued as after any transcription.

Params: ``audio_file_id`` (the mix), ``language`` (``auto`` or a code), ``diarize``, ``use_itn``.
A retried attempt transcribes every track again (no per-track checkpoints: tracks are the meeting's
length, the batch job's checkpoints are per VAD chunk of one file). Failures map as the transcribe
job's do (``triton_unavailable`` retried; undecodable audio by the decoder's code).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import replace
from typing import Any

from api.crud import audio as audio_crud
from api.crud import transcriptions as tcrud
from api.jobs.kinds import JobCancelled, JobError, job_kind
from api.jobs.runner import JobContext
from api.models import AudioFile, RecordingSession, RecordingTrack, SessionStatus, TranscriptionSource
from api.recording import render_track
from api.summaries import maybe_enqueue_auto_summary
from api.transcribe_job import STT_MODEL, inference_job_errors
from speechlib.transcript import Segment, Transcript

log = logging.getLogger("api.live_transcribe")

KIND = "live_transcribe"
PROGRESS_TOTAL = 1000


def job_params(
    audio_file_id: uuid.UUID, language: str | None, diarize: bool, use_itn: bool = True
) -> dict[str, Any]:
    return {
        "audio_file_id": str(audio_file_id),
        "language": language or "auto",
        "diarize": bool(diarize),
        "use_itn": bool(use_itn),
    }


def on_session_timeline(segment: Segment, offset: float, participant: str, diarized: bool) -> Segment:
    """A track's segment moved by the track's offset, its speaker the participant (with the local
    label after a slash when the track was diarized)."""
    speaker = f"{participant}/{segment.speaker}" if diarized and segment.speaker else participant
    words = tuple(
        replace(w, start=w.start + offset, end=w.end + offset, speaker=speaker) for w in segment.words
    )
    return replace(
        segment, start=segment.start + offset, end=segment.end + offset, speaker=speaker, words=words
    )


@job_kind(KIND)
def live_transcribe(ctx: JobContext) -> dict[str, Any]:
    from inference_client.transcription import TranscriptionOptions

    services = ctx.services
    if services is None:
        raise JobError("worker_misconfigured", "this worker has no Triton/blob services", retryable=True)
    audio_file_id = uuid.UUID(str(ctx.params["audio_file_id"]))
    diarize = bool(ctx.params.get("diarize", False))
    with services.db.session() as s:
        done = tcrud.by_job(s, ctx.job_id)
        if done is not None:
            return {"transcription_id": str(done.id), "version": done.version, "already_stored": True}
        session = s.get(RecordingSession, ctx.session_id) if ctx.session_id else None
        if session is None or s.get(AudioFile, audio_file_id) is None:
            raise JobError("audio_missing", "the session or its recording was deleted")
        duration = session.duration_seconds
        tracks = [
            (t.id, t.participant, t.offset_seconds) for t in audio_crud.tracks_of_session(s, session.id)
        ]
        session.status = SessionStatus.processing.value

    options = TranscriptionOptions(
        language=ctx.params.get("language") or "auto",
        use_itn=bool(ctx.params.get("use_itn", True)),
        diarize=diarize,
        vad_chunk_s=services.settings.vad_chunk_seconds,
    )
    workdir = services.settings.data_dir / "jobs" / str(ctx.job_id)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    segments: list[Segment] = []
    try:
        for i, (track_id, participant, offset) in enumerate(tracks):
            ctx.check()
            ctx.report(
                i * PROGRESS_TOTAL // max(1, len(tracks)), PROGRESS_TOTAL, f"track {i + 1}/{len(tracks)}"
            )
            with services.db.session() as s:
                track = s.get(RecordingTrack, track_id)
                audio = render_track(s, services.blobs, track, workdir / f"track-{i}.f32") if track else None
            if audio is None:
                continue
            with inference_job_errors():
                result = services.inference.run(lambda t, a=audio: t.transcribe(a, options, workdir=workdir))
            segments += [
                on_session_timeline(seg, offset, participant, diarize) for seg in result.transcript.segments
            ]
    except JobError as e:
        if not e.retryable or ctx.attempt >= ctx.max_attempts:
            _back_to_completed(services, ctx)
        raise
    except JobCancelled:
        _back_to_completed(services, ctx)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    transcript = Transcript.from_segments(segments, duration=duration)
    elapsed_ms = int((time.perf_counter() - started) * 1000)

    def store(s: Any) -> dict[str, Any]:
        session = s.get(RecordingSession, ctx.session_id)
        if session is None:
            raise JobError("audio_missing", "the session was deleted")
        row = tcrud.save_transcription(
            s,
            session=session,
            transcript=transcript,
            source=TranscriptionSource.batch.value,
            job_id=ctx.job_id,
            audio_file_id=audio_file_id,
            processing_time_ms=elapsed_ms,
            stt_model=STT_MODEL,
        )
        session.status = SessionStatus.completed.value
        maybe_enqueue_auto_summary(s, session, services.settings)
        speakers = list(dict.fromkeys(seg.speaker for seg in transcript.segments if seg.speaker))
        return {
            "transcription_id": str(row.id),
            "version": row.version,
            "segments": len(transcript.segments),
            "speakers": speakers,
            "tracks": len(tracks),
        }

    return tcrud.store_retrying(services.db, store)


def _back_to_completed(services: Any, ctx: JobContext) -> None:
    """A failed re-transcription leaves the live transcription current: the session is completed."""
    with services.db.session() as s:
        session = s.get(RecordingSession, ctx.session_id)
        if session is not None:
            session.status = SessionStatus.completed.value
