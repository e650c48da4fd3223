"""The ``transcribe`` job: a session's uploaded audio -> a stored, speaker-attributed transcription.

Params (set by the routes in ``api/routes/transcriptions.py``): ``audio_file_id``, ``language``
(``auto`` or a code of :mod:`speechlib.languages`), ``num_speakers`` / ``min_speakers`` /
``max_speakers`` (optional), ``use_itn`` (punctuation and digits; default true).

The work is :meth:`inference_client.transcription.Transcriber.transcribe` on the worker's one Triton
client (``ctx.services.inference``). Checkpoints: each finished VAD+ASR chunk is written to the blob
store as JSON and the diarization's window results (~18 MB per hour) as npz; the job row's
checkpoint holds only their paths (``{"chunks": [path, ...], "diarization": path | null}``). A
resumed attempt reads them back, so finished chunks are not sent to Triton again. The decoded audio
lives in ``<DATA_DIR>/jobs/<job id>/`` (kept across attempts on one machine; removed at the end).

Storing is idempotent per job (``transcriptions.job_id`` is unique): an attempt that finds its
transcription already stored returns it. The session is ``processing`` while the job runs, then
``completed``; when the job fails it goes back to ``completed`` if it still has a transcription (a
failed re-transcription leaves the current one as it was), else ``failed``.

Failures: undecodable audio -> the decoder's code (``not_audio``, ``too_short``, ... not retried);
bad options -> ``invalid_options`` (checked before any work); Triton unreachable -> ``triton_unavailable`` (retried);
diarization parameters missing -> ``diarization_unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

from api.crud import transcriptions as tcrud
from api.jobs.kinds import JobCancelled, JobError, job_kind
from api.jobs.runner import JobContext, JobServices
from api.models import AudioFile, RecordingSession, SessionStatus, TranscriptionSource
from api.summaries import maybe_enqueue_auto_summary

log = logging.getLogger("api.transcribe")

KIND = "transcribe"
# Weight of each stage in the job's overall progress (``done`` of ``PROGRESS_TOTAL``); VAD and ASR
# run chunk by chunk together, diarization alongside them.
STAGE_WEIGHTS = {"decode": 0.1, "vad": 0.05, "asr": 0.4, "diarization": 0.4, "align": 0.05}
PROGRESS_TOTAL = 1000
REPORT_EVERY_S = 0.5
STT_MODEL = "sensevoice"


def job_params(
    audio_file_id: uuid.UUID,
    language: str | None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    use_itn: bool = True,
) -> dict[str, Any]:
    """The job's params as the routes submit them (JSON)."""
    return {
        "audio_file_id": str(audio_file_id),
        "language": language or "auto",
        "num_speakers": num_speakers,
        "min_speakers": min_speakers,
        "max_speakers": max_speakers,
        "use_itn": use_itn,
    }


def _services(ctx: JobContext) -> JobServices:
    if ctx.services is None:
        raise JobError("worker_misconfigured", "this worker has no Triton/blob services", retryable=True)
    return ctx.services


def _checkpoint_dir(session: RecordingSession, job_id: uuid.UUID) -> str:
    return f"{session.user_id}/{session.id}/jobs/{job_id}"


def _set_outcome(services: JobServices, ctx: JobContext, audio_file_id: uuid.UUID, error: str | None) -> None:
    """After a failure or a cancel: the session back to ``completed`` when it keeps a transcription,
    else ``failed`` (``cancelled`` for a cancel); the audio file's processing status with the reason."""
    with services.db.session() as s:
        session = s.get(RecordingSession, ctx.session_id)
        audio = s.get(AudioFile, audio_file_id)
        if session is not None:
            if tcrud.current_transcription(s, session.id) is not None:
                session.status = SessionStatus.completed.value
            elif error is None:
                session.status = SessionStatus.cancelled.value
            else:
                session.status = SessionStatus.failed.value
        if audio is not None:
            audio.processing_status = "failed" if error else "cancelled"
            audio.error_message = error


def _result(row: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    speakers = list(dict.fromkeys(seg.get("speaker") for seg in row.segments if seg.get("speaker")))
    return {
        "transcription_id": str(row.id),
        "version": row.version,
        "language": row.language,
        "segments": len(row.segments),
        "speakers": speakers,
        **(extra or {}),
    }


class _Progress:
    """Stage fractions -> the job's overall progress, written at most every REPORT_EVERY_S (from the
    inference loop: the database write runs in a thread). Also checks for a cancel at each write."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.fractions: dict[str, float] = {}
        self.last = 0.0

    def done(self) -> int:
        total = sum(STAGE_WEIGHTS[k] * f for k, f in self.fractions.items() if k in STAGE_WEIGHTS)
        return min(PROGRESS_TOTAL, int(total * PROGRESS_TOTAL))

    async def __call__(self, p: Any) -> None:
        previous = self.fractions.get(p.stage, 0.0)
        self.fractions[p.stage] = max(previous, float(p.fraction))
        now = time.monotonic()
        if now - self.last < REPORT_EVERY_S and p.fraction < 1.0:
            return
        self.last = now
        await asyncio.to_thread(self._write, p.stage)

    def _write(self, stage: str) -> None:
        self.ctx.check()
        self.ctx.report(self.done(), PROGRESS_TOTAL, stage)


def _drop_partials(
    services: JobServices, ctx: JobContext, saved: dict[str, Any] | None, workdir: Path | None = None
) -> None:
    """The job is over: its checkpoint blobs (``saved``, default: those of its checkpoint row) and its
    work folder go."""
    saved = saved if saved is not None else (ctx.checkpoint or {})
    try:
        services.blobs.delete([p for p in [*saved.get("chunks", []), saved.get("diarization")] if p])
    except Exception:
        log.warning("job %s: removing its checkpoint blobs failed", ctx.job_id, exc_info=True)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def inference_job_errors() -> Iterator[None]:
    """The engine's failures as a job's stable error codes: the decoder's own code, and Triton's
    (unavailable or a failed request: retryable; a model it does not serve: not)."""
    from inference_client.audio import AudioDecodeError
    from inference_client.errors import InferenceError, ModelNotFoundError, TritonUnavailableError

    try:
        yield
    except AudioDecodeError as e:
        raise JobError(e.code, str(e)) from None
    except TritonUnavailableError as e:
        raise JobError(
            "triton_unavailable", f"Triton did not answer ({e.message}); retrying", retryable=True
        ) from None
    except ModelNotFoundError as e:
        raise JobError("model_not_found", f"Triton does not serve a model this job needs: {e}") from None
    except InferenceError as e:
        raise JobError("inference_failed", f"a Triton request failed: {e}", retryable=True) from None


def _source_file(services: JobServices, audio: AudioFile, workdir: Path) -> Path:
    """The uploaded file on this machine: the blob's own file (local store) or a download."""
    local = services.blobs.local_file(audio.storage_path)
    if local is not None:
        return local
    ext = PurePath(audio.storage_path).suffix or ".bin"
    target = workdir / f"source{ext}"
    if target.is_file() and target.stat().st_size == audio.file_size_bytes:
        return target
    partial = target.with_name(target.name + ".part")
    with open(partial, "wb") as f:
        for chunk in services.blobs.open_chunks(audio.storage_path):
            f.write(chunk)
    partial.replace(target)
    return target


def _load_resume(services: JobServices, checkpoint: dict[str, Any] | None, options_key: str) -> list[Any]:
    """What an earlier attempt saved: its chunks (while they were made with these options, e.g. the
    same VAD_CHUNK_SECONDS) and its diarization. A checkpoint that cannot be read is redone."""
    from inference_client.transcription import ChunkCheckpoint, DiarizationCheckpoint

    if not checkpoint:
        return []
    items: list[Any] = []
    try:
        for path in checkpoint.get("chunks", []):
            chunk = ChunkCheckpoint.from_dict(json.loads(b"".join(services.blobs.open_chunks(path))))
            if chunk.options_key != options_key:
                break  # made with other settings: this chunk and the ones after it are redone
            items.append(chunk)
    except Exception:
        log.warning("a chunk checkpoint could not be read; redoing from chunk %d", len(items), exc_info=True)
    if checkpoint.get("diarization"):
        try:
            data = b"".join(services.blobs.open_chunks(checkpoint["diarization"]))
            items.append(DiarizationCheckpoint.from_bytes(data))
        except Exception:
            log.warning("the diarization checkpoint could not be read; redoing it", exc_info=True)
    return items


@job_kind(KIND)
def transcribe(ctx: JobContext) -> dict[str, Any]:
    from inference_client.transcription import ChunkCheckpoint, TranscriptionOptions

    services = _services(ctx)
    audio_file_id = uuid.UUID(str(ctx.params["audio_file_id"]))
    with services.db.session() as s:
        done = tcrud.by_job(s, ctx.job_id)
        if done is not None:  # an earlier attempt stored it; only its completion was lost
            return _result(done, {"already_stored": True})
        session = s.get(RecordingSession, ctx.session_id) if ctx.session_id else None
        audio = s.get(AudioFile, audio_file_id)
        if session is None or audio is None or audio.session_id != session.id:
            _drop_partials(services, ctx, None)  # an earlier attempt's, nothing will resume them
            raise JobError("audio_missing", "the session or its audio file was deleted")
        session.status = SessionStatus.processing.value
        audio.processing_status = "processing"
        audio.error_message = None
        s.flush()
        s.expunge_all()

    options = TranscriptionOptions(
        language=ctx.params.get("language") or "auto",
        num_speakers=ctx.params.get("num_speakers"),
        min_speakers=ctx.params.get("min_speakers"),
        max_speakers=ctx.params.get("max_speakers"),
        use_itn=bool(ctx.params.get("use_itn", True)),
        vad_chunk_s=services.settings.vad_chunk_seconds,
    )
    try:
        from speechlib.diarization.options import check_speaker_counts

        options_key = options.checked().chunk_key()
        check_speaker_counts(options.num_speakers, options.min_speakers, options.max_speakers)
    except (ValueError, TypeError) as e:
        _set_outcome(services, ctx, audio_file_id, f"invalid_options: {e}")
        _drop_partials(services, ctx, None)
        raise JobError("invalid_options", str(e)) from None
    if options.diarize:
        try:  # the diarization parameters, read once per worker (DIARIZATION_PARAMS_DIR)
            services.inference.pipeline_settings()
        except FileNotFoundError as e:
            message = f"{e} (set DIARIZATION_PARAMS_DIR to the folder that holds them)"
            _set_outcome(services, ctx, audio_file_id, f"diarization_unavailable: {message}")
            _drop_partials(services, ctx, None)
            raise JobError("diarization_unavailable", message) from None
    workdir = services.settings.data_dir / "jobs" / str(ctx.job_id)
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = _checkpoint_dir(session, ctx.job_id)
    saved: dict[str, Any] = {"chunks": [], "diarization": None, **(ctx.checkpoint or {})}
    progress = _Progress(ctx)

    def save(cp: Any) -> None:  # in a thread: blob write, then the checkpoint row
        ctx.check()
        if isinstance(cp, ChunkCheckpoint):
            path = f"{prefix}/chunk-{cp.index:05d}.json"
            services.blobs.put(path, [json.dumps(cp.to_dict()).encode()], "application/json")
            saved["chunks"] = [*saved["chunks"][: cp.index], path]
            stage = "asr"
        else:
            path = f"{prefix}/diarization.npz"
            services.blobs.put(path, [cp.to_bytes()], "application/octet-stream")
            saved["diarization"] = path
            stage = "diarization"
        ctx.save(dict(saved), progress.done(), PROGRESS_TOTAL, stage)

    async def on_checkpoint(cp: Any) -> None:
        await asyncio.to_thread(save, cp)

    started = time.perf_counter()
    error: str | None = None
    try:
        try:
            resume = _load_resume(services, ctx.checkpoint, options_key)
            with inference_job_errors():
                source = _source_file(services, audio, workdir)
                result = services.inference.run(
                    lambda t: t.transcribe(
                        source,
                        options,
                        workdir=workdir,
                        progress=progress,
                        on_checkpoint=on_checkpoint,
                        resume=resume,
                    )
                )
        except ValueError as e:  # options were checked above: what is left is the input's
            raise JobError("transcription_failed", str(e)) from None
    except JobError as e:
        if not e.retryable or ctx.attempt >= ctx.max_attempts:
            error = f"{e.code}: {e.message}"
            _set_outcome(services, ctx, audio_file_id, error)
            _drop_partials(services, ctx, saved, workdir)
        raise
    except JobCancelled:
        _set_outcome(services, ctx, audio_file_id, None)
        _drop_partials(services, ctx, saved, workdir)
        raise

    ctx.check()
    ctx.report(PROGRESS_TOTAL - 1, PROGRESS_TOTAL, "storing")
    elapsed_ms = int((time.perf_counter() - started) * 1000)

    def store(s: Any) -> Any:
        session = s.get(RecordingSession, ctx.session_id)
        audio = s.get(AudioFile, audio_file_id)
        if session is None or audio is None:
            raise JobError("audio_missing", "the session or its audio file was deleted")
        row = tcrud.save_transcription(
            s,
            session=session,
            transcript=result.transcript,
            source=TranscriptionSource.batch.value,
            job_id=ctx.job_id,
            audio_file_id=audio_file_id,
            processing_time_ms=elapsed_ms,
            stt_model=STT_MODEL,
        )
        session.status = SessionStatus.completed.value
        if result.transcript.duration is not None:
            session.duration_seconds = result.transcript.duration
            if audio.duration_seconds is None:
                audio.duration_seconds = round(result.transcript.duration, 3)
        audio.processing_status = "completed"
        audio.error_message = None
        maybe_enqueue_auto_summary(s, session, services.settings)  # the user's auto_summary (issue 13)
        return _result(row)

    try:
        out = tcrud.store_retrying(services.db, store)
    except JobError:  # the session was deleted while the job ran: nothing will resume these partials
        _drop_partials(services, ctx, saved, workdir)
        raise
    _drop_partials(services, ctx, saved, workdir)  # the partial results are in the transcription now
    return {
        **out,
        "duration_seconds": result.transcript.duration,
        "chunks": result.chunks,
        "resumed_chunks": result.resumed_chunks,
        "diarization_resumed": result.diarization_resumed,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }
