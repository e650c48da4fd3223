"""The agent's HTTP endpoint on ``AGENT_HTTP_PORT`` (docs/agent.md "Health and metrics").

- ``GET /`` (and ``/health``): livekit-agents' own health answer, relayed: 200 ``OK`` while the worker
  runs and has not given up on LiveKit, 503 otherwise (also while it starts).
- ``GET /worker``: livekit-agents' worker info (agent name, active jobs, load), relayed.
- ``GET /metrics``: Prometheus text of every process of the worker. Job processes are separate
  processes (livekit-agents' process pool), so prometheus_client runs in multiprocess mode: each
  process writes its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` (set by the worker before
  its first job process starts), and this endpoint merges them. Live gauges (``livesum``) of a
  process that died without decrementing them are dropped here (``mark_process_dead``).

livekit-agents builds its health server inside ``AgentServer.run`` with no hook to add a route, so it
listens on a loopback port of its choosing and this server, the public one, relays to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

log = logging.getLogger(__name__)

_LIVE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def collect_metrics(directory: str | None = None) -> bytes:
    """The merged samples of every process that wrote to ``directory`` (default:
    ``PROMETHEUS_MULTIPROC_DIR``), after dropping the live gauges of processes that are gone."""
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest()
    for name in os.listdir(directory):
        m = _LIVE_FILE.match(name)
        if m and not _alive(int(m.group(1))):
            multiprocess.mark_process_dead(int(m.group(1)), directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    return generate_latest(registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HealthServer:
    """``upstream_port()`` is livekit-agents' health port (0 until its server listens)."""

    def __init__(self, host: str, port: int, *, upstream_port: Callable[[], int]):
        self.host = host
        self.port = port
        self._upstream_port = upstream_port
        self._app = web.Application()
        self._app.add_routes(
            [
                web.get("/", self._health),
                web.get("/health", self._health),
                web.get("/worker", self._worker),
                web.get("/metrics", self._metrics),
            ]
        )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host or None, self.port)
        await site.start()
        if self.port == 0 and self._runner.addresses:
            self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        if runner is not None:
            await runner.cleanup()
        if session is not None:
            await session.close()

    async def _relay(self, path: str) -> web.Response:
        port = self._upstream_port()
        if not port or self._session is None:
            return web.Response(status=503, text="starting")
        try:
            async with self._session.get(f"http://127.0.0.1:{port}{path}") as r:
                body = await r.read()
                return web.Response(status=r.status, body=body, content_type=r.content_type)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return web.Response(status=503, text=f"worker not answering: {e!r}")

    async def _health(self, _request: web.Request) -> web.Response:
        return await self._relay("/")

    async def _worker(self, _request: web.Request) -> web.Response:
        return await self._relay("/worker")

    async def _metrics(self, _request: web.Request) -> web.Response:
        data = await asyncio.get_running_loop().run_in_executor(None, collect_metrics)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})
