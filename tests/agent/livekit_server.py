"""A stand-in for LiveKit's server at its network boundary, for the agent worker's tests: a loopback
WebSocket at ``/agent`` speaking LiveKit's agent protocol (binary protobufs ``WorkerMessage`` in,
``ServerMessage`` out, from the installed ``livekit.protocol.agent``), as livekit-agents' worker
talks to a real server. The test drives it: read what the worker sent (:meth:`expect`), send what a
server would (:meth:`send`). Room connections (``/rtc...``, what the job's ``ctx.connect()`` opens
with the assignment's URL and token) are recorded and refused: there is no SFU here.

Runs an aiohttp server on its own event loop in a thread, so tests stay synchronous.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web
from livekit.api import TokenVerifier
from livekit.protocol import agent


@dataclass(frozen=True)
class RoomConnect:
    """One room-connection attempt: its path and the access token it carried."""

    path: str
    token: str


class AgentProtocolServer:
    def __init__(self, api_key: str, api_secret: str):
        self.verifier = TokenVerifier(api_key, api_secret)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.messages: list[agent.WorkerMessage] = []  # everything the worker sent, in order
        self.room_connects: list[RoomConnect] = []
        self.worker_auth: list[dict] = []  # verified claims of each worker connection
        self._inbox: queue.Queue[agent.WorkerMessage] = queue.Queue()
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    # ------------------------------------------------------------------ test side
    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> AgentProtocolServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def send(self, msg: agent.ServerMessage) -> None:
        """Send one message to the connected worker."""

        async def _send() -> None:
            if self._ws is None:
                raise RuntimeError("no worker connected")
            await self._ws.send_bytes(msg.SerializeToString())

        asyncio.run_coroutine_threadsafe(_send(), self.loop).result(10)

    def expect(
        self, which: str, timeout: float, where: Callable[[agent.WorkerMessage], bool] = lambda m: True
    ) -> agent.WorkerMessage:
        """The next message of kind ``which`` (``register``, ``availability``, ``update_job``, ...)
        matching ``where``; others are skipped (they stay in :attr:`messages`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {which} message from the worker within {timeout} s")
            try:
                msg = self._inbox.get(timeout=left)
            except queue.Empty:
                continue
            if msg.WhichOneof("message") == which and where(msg):
                return msg

    # ------------------------------------------------------------------ server side
    async def _start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/agent", self._agent), web.get("/rtc{tail:.*}", self._rtc)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        try:
            claims = self.verifier.verify(auth.removeprefix("Bearer "))
        except Exception as e:  # noqa: BLE001 - LiveKit answers 401 to a bad worker token
            return web.Response(status=401, text=f"invalid token: {e}")
        if not (claims.video and claims.video.agent):
            return web.Response(status=401, text="token lacks the agent grant")
        self.worker_auth.append({"identity": claims.identity, "agent": claims.video.agent})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        async for frame in ws:
            if frame.type == WSMsgType.BINARY:
                msg = agent.WorkerMessage()
                msg.ParseFromString(frame.data)
                self.messages.append(msg)
                self._inbox.put(msg)
        return ws

    async def _rtc(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token") or request.headers.get("Authorization", "").removeprefix(
            "Bearer "
        )
        self.room_connects.append(RoomConnect(path=request.path, token=token))
        return web.Response(status=404, text="no SFU here")
