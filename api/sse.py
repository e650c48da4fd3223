"""Server-Sent Events of a polled source: the one loop behind the job and live-session streams.

``poll`` (blocking, run in a worker thread) returns the events that came since its last call, as
``(id, event, data)``; the stream sends them, polls again at once while events flow, else every
``SSE_POLL_SECONDS`` with a keep-alive comment every ``SSE_KEEPALIVE_SECONDS``, and ends at
``deadline`` (time.monotonic), when the client disconnects, after an event ``stop_after`` accepts,
or when a poll finds nothing and ``stop_when_idle()`` says nothing more will come.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse

SSE_POLL_SECONDS = 0.5
SSE_KEEPALIVE_SECONDS = 15.0

Event = tuple[int | None, str, dict[str, Any]]


def sse_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    """An event stream: no caching, no proxy buffering (nginx's X-Accel-Buffering)."""
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse_frame(event_id: int | None, event: str, data: dict) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), default=str)}")
    return ("\n".join(lines) + "\n\n").encode()


async def poll_sse(
    request: Request,
    poll: Callable[[], list[Event]],
    *,
    deadline: float,
    stop_after: Callable[[str, dict[str, Any]], bool] = lambda event, data: False,
    stop_when_idle: Callable[[], bool] = lambda: False,
) -> AsyncIterator[bytes]:
    idle = 0.0
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        events = await anyio.to_thread.run_sync(poll)
        for event_id, event, data in events:
            yield sse_frame(event_id, event, data)
            if stop_after(event, data):
                return
        if events:
            idle = 0.0
            continue
        if stop_when_idle():
            return
        await asyncio.sleep(SSE_POLL_SECONDS)
        idle += SSE_POLL_SECONDS
        if idle >= SSE_KEEPALIVE_SECONDS:
            idle = 0.0
            yield b": keep-alive\n\n"
