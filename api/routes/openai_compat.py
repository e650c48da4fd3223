"""OpenAI-compatible speech to text: ``POST /v1/audio/transcriptions``.

Point an OpenAI client at the api (``OpenAI(base_url="http://host:8000/v1", api_key="isk_...")``) and
``client.audio.transcriptions.create(file=..., model=..., response_format=...)`` works: multipart
``file``, ``model`` (any name is accepted; SenseVoice on Triton answers), ``language``, ``prompt`` and
``temperature`` (ignored: greedy CTC has neither), ``response_format`` ``json`` / ``text`` / ``srt`` /
``vtt`` / ``verbose_json`` / ``diarized_json``, ``timestamp_granularities[]`` ``segment`` / ``word``
(verbose_json). Shapes are the OpenAI API's (``openai.types.audio``: ``Transcription``,
``TranscriptionVerbose``, ``TranscriptionDiarized``). Errors are OpenAI's
``{"error": {"message", "type", "param", "code"}}`` (also those answered before the route runs:
401, 413, see :class:`OpenAIErrorShape`), with 400 where FastAPI would say 422.

Synchronous up to ``SYNC_MAX_AUDIO_SECONDS``; longer audio is 413 pointing at the batch endpoint. Each
call is recorded in the caller's history: a session (title ``OpenAI transcription: <file name>``), the
file in the blob store and the transcription (source ``openai``).
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.core.security import Principal, Scope
from api.deps import Ctx, require_scopes
from api.sync_calls import (
    SyncCallError,
    check_language,
    decode_upload,
    multipart_body,
    record_call,
    segment_confidence,
    stt_model_name,
    transcribe,
)
from speechlib.exports import to_srt, to_vtt
from speechlib.transcript import Transcript

router = APIRouter(tags=["openai-compatible"])

PATH_PREFIX = "/v1/"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("segment", "word")
LANGUAGE_NAMES = {"zh": "chinese", "en": "english", "yue": "cantonese", "ja": "japanese", "ko": "korean"}
"""verbose_json's ``language`` is a name (Whisper's), not a code."""

Caller = Annotated[Principal, require_scopes(Scope.TRANSCRIBE)]

_ERROR_TYPES = {401: "invalid_request_error", 403: "invalid_request_error", 404: "invalid_request_error"}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object."""
    kind = _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


def _bad(message: str, param: str, code: str = "invalid_value") -> SyncCallError:
    return SyncCallError(400, code, message, param)


_ERROR_SCHEMA = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        }
    }
}
_ANSWER = {
    "description": "the transcription: JSON (json, verbose_json, diarized_json) or text (text, srt, vtt)",
    "content": {
        "application/json": {"schema": {"type": "object", "required": ["text"]}},
        "text/plain": {"schema": {"type": "string"}},
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ANSWER,
    400: {"description": "bad parameter or not decodable audio", "content": _ERROR_SCHEMA},
    401: {"description": "missing or invalid API key", "content": _ERROR_SCHEMA},
    403: {"description": "the API key lacks the transcribe scope", "content": _ERROR_SCHEMA},
    413: {"description": "body or audio over the synchronous limit", "content": _ERROR_SCHEMA},
    429: {"description": "SYNC_MAX_CONCURRENT calls in progress; see Retry-After", "content": _ERROR_SCHEMA},
    502: {"description": "the inference server failed the request", "content": _ERROR_SCHEMA},
    503: {"description": "the inference server is down or not serving the models", "content": _ERROR_SCHEMA},
}
_FORM = multipart_body(
    {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "language": {"type": "string"},
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
        "temperature": {"type": "number"},
        "timestamp_granularities[]": {
            "type": "array",
            "items": {"type": "string", "enum": list(GRANULARITIES)},
        },
    },
    ["file", "model"],
)


# -- response shapes --------------------------------------------------------------------------------


def _usage(transcript: Transcript) -> dict:
    return {"type": "duration", "seconds": round(transcript.duration or 0.0, 3)}


def compression_ratio(text: str) -> float:
    """Whisper's measure: UTF-8 bytes over zlib-compressed bytes (repetitive text compresses well)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def verbose_json(transcript: Transcript, asr_segments: list, granularities: set[str], language: str) -> dict:
    """``TranscriptionVerbose``: segments (each a VAD segment: its ASR token ids, avg_logprob the mean
    log CTC posterior of its tokens, no_speech_prob 1.0 when SenseVoice tagged it ``nospeech``, else
    0.0) and/or words."""
    detected = transcript.language or (language if language != "auto" else None)
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": LANGUAGE_NAMES.get(detected or "", detected or "unknown"),
        "duration": round(transcript.duration or 0.0, 3),
        "text": transcript.text,
    }
    if "segment" in granularities:
        segments = []
        for i, (seg, asr) in enumerate(zip(transcript.segments, asr_segments, strict=True)):
            confidence = segment_confidence(asr)  # geometric mean = exp(mean log posterior)
            avg_logprob = math.log(max(confidence, 1e-12)) if confidence is not None else 0.0
            segments.append(
                {
                    "id": i,
                    "seek": 0,
                    "start": seg.start,
                    "end": seg.end,
                    "text": seg.text,
                    "tokens": [t.id for t in asr.transcript.tokens],
                    "temperature": 0.0,
                    "avg_logprob": avg_logprob,
                    "compression_ratio": compression_ratio(seg.text),
                    "no_speech_prob": 1.0 if asr.transcript.language == "nospeech" else 0.0,
                }
            )
        body["segments"] = segments
    if "word" in granularities:
        # as OpenAI's: spoken words only (a punctuation token is no word to time)
        body["words"] = [
            {"word": w.text, "start": w.start, "end": w.end}
            for s in transcript.segments
            for w in s.words
            if any(ch.isalnum() for ch in w.text)
        ]
    body["usage"] = _usage(transcript)
    return body


def speaker_letters(transcript: Transcript) -> dict[str, str]:
    """OpenAI labels speakers ``A``, ``B``, ... in order of first appearance (then ``AA``, ``AB``...)."""
    out = {}
    for n, speaker in enumerate(transcript.speakers):
        label, k = "", n
        while True:
            label = chr(ord("A") + k % 26) + label
            k = k // 26 - 1
            if k < 0:
                break
        out[speaker] = label
    return out


def diarized_json(transcript: Transcript) -> dict:
    """``TranscriptionDiarized``: one segment per speaker turn of the text."""
    letters = speaker_letters(transcript)
    return {
        "task": "transcribe",
        "duration": round(transcript.duration or 0.0, 3),
        "text": transcript.text,
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{i}",
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "speaker": letters.get(s.speaker or "", "A"),
            }
            for i, s in enumerate(transcript.segments)
        ],
        "usage": _usage(transcript),
    }


def render(result, response_format: str, granularities: set[str], language: str) -> Response:
    t = result.transcript
    if response_format == "json":
        return JSONResponse({"text": t.text, "usage": _usage(t)})
    if response_format == "text":
        return PlainTextResponse(t.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(to_srt(t, speakers=False))
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(t, speakers=False), media_type="text/vtt")
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(t, result.asr_segments, granularities, language))
    return JSONResponse(diarized_json(t))


# -- the route --------------------------------------------------------------------------------------


@router.post(TRANSCRIPTIONS_PATH, responses=RESPONSES, openapi_extra=_FORM, response_class=Response)
async def create_transcription(
    request: Request,
    ctx: Ctx,
    principal: Caller,
    file: Annotated[UploadFile | None, File(include_in_schema=False)] = None,
    model: Annotated[str | None, Form(include_in_schema=False)] = None,
    language: Annotated[str | None, Form(include_in_schema=False)] = None,
    prompt: Annotated[str | None, Form(include_in_schema=False)] = None,
    response_format: Annotated[str | None, Form(include_in_schema=False)] = None,
    temperature: Annotated[str | None, Form(include_in_schema=False)] = None,
    granularities: Annotated[
        list[str] | None, Form(alias="timestamp_granularities[]", include_in_schema=False)
    ] = None,
    stream: Annotated[str | None, Form(include_in_schema=False)] = None,
):
    """Transcribe an audio file (OpenAI's API). See the module docstring."""
    try:
        options = _check(file, model, language, response_format, temperature, granularities, stream)
        limit = ctx.settings.sync_max_audio_seconds
        x = await anyio.to_thread.run_sync(decode_upload, file.file, limit)
        result = await transcribe(
            ctx, x, language=options["language"], diarize=options["format"] == "diarized_json"
        )
        await anyio.to_thread.run_sync(
            lambda: record_call(
                ctx,
                principal,
                result=result,
                source="openai",
                title=f"OpenAI transcription: {file.filename or 'audio'}",
                audio=(file.file, file.filename, file.content_type),
                stt_model=stt_model_name(),
                metadata={"requested_model": options["model"][:100], "response_format": options["format"]},
            )
        )
    except SyncCallError as e:
        return error_response(e.status, e.message, e.param, e.code)
    return render(result, options["format"], options["granularities"], options["language"])


def _check(file, model, language, response_format, temperature, granularities, stream) -> dict:
    if file is None or not hasattr(file, "file"):
        raise _bad("you must provide a file (multipart field 'file')", "file", "missing_required_parameter")
    if not model or not model.strip():
        raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
    fmt = (response_format or "json").strip()
    if fmt not in RESPONSE_FORMATS:
        raise _bad(
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}; got {fmt!r}", "response_format"
        )
    wanted = set(granularities or ())
    unknown = wanted - set(GRANULARITIES)
    if unknown:
        raise _bad(
            f"timestamp_granularities[] takes {', '.join(GRANULARITIES)}; got {', '.join(sorted(unknown))}",
            "timestamp_granularities[]",
        )
    if temperature is not None and temperature.strip():
        try:
            value = float(temperature)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise _bad("temperature must be a number between 0 and 1", "temperature")
    if stream is not None and stream.strip().lower() in ("true", "1"):
        raise _bad(
            "streaming transcription is not supported here; leave stream out", "stream", "unsupported_value"
        )
    return {
        "model": model.strip(),
        "language": check_language(language),
        "format": fmt,
        "granularities": wanted or {"segment"},
    }


# -- errors answered before the route ---------------------------------------------------------------


class OpenAIErrorShape:
    """ASGI middleware for ``/v1/...``: error answers made before or around the route (401 from
    authentication, 413 from the body limit, 422 from request parsing, 5xx) get OpenAI's error
    shape; 422 becomes 400, as OpenAI answers. Other paths pass untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}

        async def reshaping_send(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                is_json = headers.get(b"content-type", b"").startswith(b"application/json")
                if message["status"] >= 400 and is_json:
                    held["start"] = message
                    held["body"] = b""
                    return
                await send(message)
            elif message["type"] == "http.response.body" and "start" in held:
                held["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    await _send_reshaped(send, held["start"], held["body"])
            else:
                await send(message)

        await self.app(scope, receive, reshaping_send)


async def _send_reshaped(send, start: dict, body: bytes) -> None:
    status = start["status"]
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        reshaped = payload  # the route's own OpenAI error
    else:
        detail = payload.get("detail") if isinstance(payload, dict) else None
        param = None
        if isinstance(detail, list) and detail:  # FastAPI's validation errors
            first = detail[0] if isinstance(detail[0], dict) else {}
            loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query")]
            param = loc[-1] if loc else None
            message = "; ".join(f"{'.'.join(map(str, d.get('loc', ())))}: {d.get('msg')}" for d in detail)
        else:
            message = str(detail) if detail is not None else "error"
        if status == 422:
            status = 400
        code = {401: "invalid_api_key", 413: "request_too_large"}.get(status)
        reshaped = error_body(status, message, param, code)
        if isinstance(payload, dict) and payload.get("request_id"):
            reshaped["request_id"] = payload["request_id"]  # beside OpenAI's object, as every 401/5xx has it
    payload_bytes = json.dumps(reshaped).encode()
    headers = [
        (k, v) for k, v in start.get("headers") or [] if k.lower() not in (b"content-length", b"content-type")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload_bytes)).encode())]
    await send({**start, "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload_bytes})
