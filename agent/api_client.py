"""The agent's only door to the api (docs/interfaces.md "Live sessions", "Recording chunks and finalize").

:class:`AgentApiClient` exchanges the LiveKit job token for an agent session token
(``POST /api/v1/agent/token``), keeps it fresh (renewed with itself before it expires; when the api
refuses a renewal, e.g. past ``MAX_TOKEN_LIFETIME_SECONDS``, the job token is exchanged again while it
is still valid) and makes the live-write calls with it: segments, status, recording chunks, the
recording listing, finalize.

Failures, the same for every call:

- connection errors, timeouts, 5xx, 408 and 429 are *transient*: retried with exponential backoff
  and jitter (tenacity), a bounded number of times, then :class:`ApiUnavailableError`;
- a 401 re-exchanges the job token once and repeats the request (then :class:`AgentAuthError`);
- any other 4xx is the api's final word: logged and raised as :class:`ApiRejectedError` (``status_code``,
  ``detail``), never retried (a 409 ``chunk_conflict`` or ``finalized`` would answer the same again).

Every failed attempt counts in ``metrics.API_ERRORS{operation}``. :class:`ApiSegmentPublisher` is the
:class:`~agent.segments.TranscriptPublisher` that posts segments in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from agent import metrics
from agent.segments import LiveSegment, TranscriptPublisher

log = logging.getLogger("agent.api")

TOKEN_PATH = "/api/v1/agent/token"
MAX_SEGMENTS_PER_REQUEST = 100  # the api's limit per POST .../segments
RETRIED_STATUS = frozenset({408, 429})  # and every 5xx


class AgentApiError(RuntimeError):
    """A call to the api failed; ``operation`` names it (the API_ERRORS label)."""

    def __init__(self, operation: str, message: str, status_code: int | None = None, detail: Any = None):
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.status_code = status_code
        self.detail = detail


class ApiUnavailableError(AgentApiError):
    """Transient failures (connection, timeout, 5xx, 408, 429) outlasted the retries."""


class ApiRejectedError(AgentApiError):
    """The api refused the request for good (a 4xx other than 401/408/429): retrying cannot help."""


class AgentAuthError(ApiRejectedError):
    """The api refused the job token (forged, expired, not an agent's: 401; its room's session does
    not exist: 404) or every agent credential."""


class ApiClosedError(AgentApiError):
    """The client was closed while the call was pending."""


@dataclass(frozen=True)
class AgentToken:
    """An agent session token as ``POST /api/v1/agent/token`` answers it."""

    access_token: str
    expires_in: float  # seconds, at the time of the answer
    expires_at: float  # epoch seconds (the api's clock)
    session_id: str
    room_name: str
    identity: str
    obtained_at: float  # time.monotonic() when the answer arrived

    @property
    def refresh_deadline(self) -> float:
        """time.monotonic() at which the token expires."""
        return self.obtained_at + self.expires_in


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # connect/read/write errors and timeouts
        return True
    if isinstance(exc, _RetryableStatus):
        return True
    return False


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class _Unauthorized(Exception):
    def __init__(self, response: httpx.Response):
        super().__init__("HTTP 401")
        self.response = response


class AgentApiClient:
    """The api's live-write endpoints for one session, as the agent of one LiveKit job.

    ``session_id`` and ``identity`` are known after :meth:`start`. ``retry_attempts`` bounds the tries
    of one call (backoff: random exponential, ``retry_min_wait`` .. ``retry_max_wait`` seconds).
    The token is renewed ``renew_before_s`` seconds before it expires (at most 90 % of its lifetime
    in advance)."""

    def __init__(
        self,
        base_url: str,
        job_token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        retry_attempts: int = 5,
        retry_min_wait: float = 0.1,
        retry_max_wait: float = 5.0,
        renew_before_s: float = 60.0,
    ):
        self.base_url = base_url.rstrip("/")
        self._job_token = job_token
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout)
        self.retry_attempts = max(1, int(retry_attempts))
        self.retry_min_wait = retry_min_wait
        self.retry_max_wait = retry_max_wait
        self.renew_before_s = renew_before_s
        self.token: AgentToken | None = None
        self.session_id: str = ""
        self.identity: str = ""
        self.renewals = 0  # successful renewals (with the agent token or the job token again)
        self._closed = False
        self._renewer: asyncio.Task | None = None
        self._exchange_lock = asyncio.Lock()
        self._starting = False
        self._ready = asyncio.Event()  # start() ended (self.token set, or _start_error)
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ token
    async def start(self, *, wait: bool = False) -> AgentToken:
        """Exchange the job token for an agent session token and schedule its renewal. Raises
        :class:`AgentAuthError` when the api refuses the job token; when it cannot be reached,
        :class:`ApiUnavailableError`, or with ``wait`` it tries again (backoff up to
        ``retry_max_wait``) until it answers or the client is closed. Calls made meanwhile (from
        another task: a publisher, a recorder) wait for it."""
        self._starting = True
        if self.token is None and self._ready.is_set():  # a start that failed before: try again
            self._ready.clear()
            self._start_error = None
        pause = self.retry_min_wait
        try:
            while True:
                try:
                    token = await self._exchange(self._job_token)
                    break
                except ApiUnavailableError as e:
                    if not wait:
                        raise
                    log.warning("%s; trying again in %.1f s", e, pause)
                await self._sleep(pause)
                pause = min(max(pause * 2, 0.5), self.retry_max_wait)
        except BaseException as e:
            self._start_error = e
            self._ready.set()  # waiting calls raise it
            raise
        self.session_id, self.identity = token.session_id, token.identity
        self._start_error = None
        self._ready.set()
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_loop(), name="agent-token-renewal")
        return token

    async def _exchange(self, credential: str) -> AgentToken:
        """POST /api/v1/agent/token with ``credential`` (the job token or the agent token)."""

        async def call() -> httpx.Response:
            return await self._http.post(TOKEN_PATH, headers={"Authorization": f"Bearer {credential}"})

        try:
            response = await self._send("token", call, reauth=False)
        except AgentAuthError:
            raise
        except ApiRejectedError as e:  # 404: the job token's room names no session of this api
            raise AgentAuthError(e.operation, str(e).partition(": ")[2], e.status_code, e.detail) from None
        body = response.json()
        token = AgentToken(
            access_token=body["access_token"],
            expires_in=float(body["expires_in"]),
            expires_at=float(body["expires_at"]),
            session_id=str(body["session_id"]),
            room_name=str(body["room_name"]),
            identity=str(body["identity"]),
            obtained_at=time.monotonic(),
        )
        self.token = token
        return token

    async def renew(self) -> AgentToken:
        """A fresh agent token: renewed with the current one; when that is refused (its renewal
        window is over, or it expired), the job token is exchanged again."""
        async with self._exchange_lock:
            current = self.token
            if current is not None and time.monotonic() < current.refresh_deadline:
                try:
                    token = await self._exchange(current.access_token)
                    self.renewals += 1
                    return token
                except AgentAuthError as e:
                    log.info("agent token renewal refused (%s): exchanging the job token again", e.detail)
            token = await self._exchange(self._job_token)
            self.renewals += 1
            return token

    async def _reexchange_after_401(self, rejected: AgentToken | None) -> None:
        """After a 401 on a live-write call: a new token from the job token (once per rejected token)."""
        async with self._exchange_lock:
            if self.token is not rejected:  # another call renewed it meanwhile
                return
            await self._exchange(self._job_token)

    def _renew_delay(self) -> float:
        token = self.token
        assert token is not None
        margin = min(self.renew_before_s, 0.9 * token.expires_in)
        return max(0.0, token.refresh_deadline - margin - time.monotonic())

    async def _renew_loop(self) -> None:
        failures = 0
        while not self._closed:
            await asyncio.sleep(self._renew_delay() if failures == 0 else min(2.0**failures, 30.0))
            try:
                await self.renew()
                failures = 0
            except ApiClosedError:
                return
            except AgentApiError as e:
                failures += 1
                token = self.token
                left = token.refresh_deadline - time.monotonic() if token else 0.0
                log.warning("agent token renewal failed (%s); the token has %.0f s left", e, left)

    # ------------------------------------------------------------------ the calls
    async def post_segments(self, segments: list[LiveSegment]) -> dict:
        """POST .../realtime/sessions/{id}/segments (≤ 100 at a time, more are split). Transient
        failures are retried until the api answers or the client is closed (then
        :class:`ApiClosedError`); a refusal (422, 413) raises :class:`ApiRejectedError`."""
        out: dict = {}
        for i in range(0, len(segments), MAX_SEGMENTS_PER_REQUEST):
            body = {"segments": [s.to_api() for s in segments[i : i + MAX_SEGMENTS_PER_REQUEST]]}
            out = await self._until_closed(
                "segments", "POST", "/api/v1/realtime/sessions/{sid}/segments", json=body
            )
        return out

    async def patch_status(
        self, *, recording: bool | None = None, participants: list[dict] | None = None
    ) -> dict:
        """PATCH .../realtime/sessions/{id}/status (the whole participant list when given)."""
        body: dict[str, Any] = {}
        if recording is not None:
            body["recording"] = recording
        if participants is not None:
            body["participants"] = participants
        response = await self._request("status", "PATCH", "/api/v1/realtime/sessions/{sid}/status", json=body)
        return response.json()

    async def put_chunk(self, participant: str, seq: int, data: bytes, offset_s: float | None) -> dict:
        """PUT .../recording/{participant}/{seq}[?offset=] with the chunk's exact bytes (201 stored,
        200 stored before: the same bytes again are harmless)."""
        params = {"offset": f"{max(0.0, offset_s):.3f}"} if offset_s is not None else None
        path = f"/api/v1/sessions/{{sid}}/recording/{quote(participant, safe='')}/{int(seq)}"
        response = await self._request(
            "chunk", "PUT", path, content=data, params=params, headers={"Content-Type": "audio/ogg"}
        )
        return response.json()

    async def get_recording(self) -> dict:
        """GET .../recording: chunk_seconds, and each participant's offset, seqs, missing, next_seq."""
        response = await self._request("recording", "GET", "/api/v1/sessions/{sid}/recording")
        return response.json()

    async def finalize(self, retranscribe: bool = False) -> dict | None:
        """POST .../finalize (idempotent). None when there is nothing to finalize (409
        ``nothing_recorded``)."""
        try:
            response = await self._request(
                "finalize",
                "POST",
                "/api/v1/sessions/{sid}/finalize",
                json={"retranscribe": retranscribe},
                timeout=httpx.Timeout(600.0, connect=10.0),  # it runs in the request (docs)
            )
        except ApiRejectedError as e:
            if e.status_code == 409 and "nothing_recorded" in str(e.detail):
                return None
            raise
        return response.json()

    async def aclose(self) -> None:
        """Stop renewing and close the connections; pending calls raise :class:`ApiClosedError`."""
        self._closed = True
        self._ready.set()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ plumbing
    async def _request(self, operation: str, method: str, path: str, **kw) -> httpx.Response:
        """One live-write call with the agent token (bounded retries, one re-exchange on 401).
        ``path`` names the session as ``{sid}`` (known once started)."""
        if self.token is None:
            await self._wait_started(operation)
        path = path.format(sid=self.session_id)
        headers = dict(kw.pop("headers", None) or {})

        async def call() -> httpx.Response:
            assert self.token is not None
            sent_with = self.token
            response = await self._http.request(
                method,
                path,
                headers={**headers, "Authorization": f"Bearer {sent_with.access_token}"},
                **kw,
            )
            response.extensions["agent_token"] = sent_with
            return response

        return await self._send(operation, call, reauth=True)

    async def _wait_started(self, operation: str) -> None:
        if not self._starting:
            raise AgentApiError(operation, "start() the client first")
        await self._ready.wait()
        if self._closed:
            raise ApiClosedError(operation, "the api client is closed")
        if self.token is None:
            error = self._start_error
            if isinstance(error, AgentApiError):
                raise type(error)(
                    operation, f"the client did not start: {error}", error.status_code, error.detail
                )
            raise AgentApiError(operation, f"the client did not start: {error!r}")

    async def _until_closed(self, operation: str, method: str, path: str, **kw) -> dict:
        """:meth:`_request`, again and again while the api is unavailable, until it answers or the
        client is closed."""
        pause = self.retry_min_wait
        while True:
            try:
                return (await self._request(operation, method, path, **kw)).json()
            except ApiUnavailableError as e:
                log.warning("%s; trying again in %.1f s", e, pause)
            await self._sleep(pause)
            pause = min(max(pause * 2, 0.5), self.retry_max_wait)

    async def _sleep(self, seconds: float) -> None:
        if self._closed:
            raise ApiClosedError("client", "the api client is closed")
        await asyncio.sleep(seconds)
        if self._closed:
            raise ApiClosedError("client", "the api client is closed")

    async def _send(self, operation: str, call, *, reauth: bool) -> httpx.Response:
        """Run ``call`` with the retry policy (module docstring)."""
        reauthed = False
        while True:
            if self._closed:
                raise ApiClosedError(operation, "the api client is closed")
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(_transient),
                    stop=stop_after_attempt(self.retry_attempts),
                    wait=wait_random_exponential(multiplier=self.retry_min_wait, max=self.retry_max_wait),
                    reraise=True,
                ):
                    with attempt:
                        if self._closed:
                            raise ApiClosedError(operation, "the api client is closed")
                        response = await self._attempt(operation, call)
                return response
            except _RetryableStatus as e:
                raise ApiUnavailableError(
                    operation,
                    f"the api answered {e.response.status_code} {_detail(e.response)!r} "
                    f"{self.retry_attempts} times",
                    e.response.status_code,
                    _detail(e.response),
                ) from None
            except httpx.TransportError as e:
                if self._closed:
                    raise ApiClosedError(operation, "the api client is closed") from None
                raise ApiUnavailableError(
                    operation, f"the api at {self.base_url} is unreachable ({type(e).__name__}: {e})"
                ) from None
            except _Unauthorized as e:
                detail = _detail(e.response)
                if not reauth or reauthed:
                    log.error("%s: the api refused the agent's credentials (401): %s", operation, detail)
                    raise AgentAuthError(
                        operation, f"the api refused the agent's credentials (401): {detail}", 401, detail
                    ) from None
                reauthed = True
                log.info("%s: 401 (%s): exchanging the job token again", operation, detail)
                await self._reexchange_after_401(e.response.extensions.get("agent_token"))

    async def _attempt(self, operation: str, call) -> httpx.Response:
        try:
            response = await call()
        except httpx.TransportError:
            metrics.API_ERRORS.labels(operation).inc()
            raise
        status = response.status_code
        if status < 400:
            return response
        metrics.API_ERRORS.labels(operation).inc()
        if status >= 500 or status in RETRIED_STATUS:
            raise _RetryableStatus(response)
        if status == 401:
            raise _Unauthorized(response)
        detail = _detail(response)
        log.error("%s: the api refused the request (%d): %s", operation, status, detail)
        raise ApiRejectedError(operation, f"the api refused the request ({status}): {detail}", status, detail)


class ApiSegmentPublisher(TranscriptPublisher):
    """A :class:`~agent.segments.TranscriptPublisher` that posts to the api in the background.

    :meth:`publish` only files the segment: pending segments are keyed by ``segment_id``, so a newer
    interim replaces a pending interim, a final replaces whatever is pending for its id, and an
    interim never replaces a pending final. A background task posts what is pending in batches of
    at most 100; while the api is unreachable, segments wait (the call in flight retries) and keep
    coalescing. At most ``max_pending`` ids wait: past it the oldest pending interim is dropped
    first, a final only when nothing but finals waits (each drop counts in
    ``API_ERRORS{operation="segments_dropped"}``). :meth:`aclose` flushes for at most
    ``close_timeout`` seconds."""

    def __init__(self, api: AgentApiClient, max_pending: int = 5000, *, close_timeout: float = 10.0):
        self.api = api
        self.max_pending = max(1, int(max_pending))
        self.close_timeout = close_timeout
        self._pending: OrderedDict[str, LiveSegment] = OrderedDict()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.posted = 0  # segments the api accepted or ignored (answered 200)
        self.dropped = 0  # segments dropped (overflow, refusal, close timeout)
        self._in_flight = 0

    async def publish(self, segment: LiveSegment) -> None:
        if self._closing:
            log.warning("segment %s published after aclose(): not sent", segment.segment_id)
            return
        pending = self._pending.get(segment.segment_id)
        if pending is not None and pending.is_final and not segment.is_final:
            return  # an interim never replaces a final
        if pending is None and len(self._pending) >= self.max_pending and not self._make_room(segment):
            return
        self._pending[segment.segment_id] = segment
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="api-segment-publisher")

    def _make_room(self, incoming: LiveSegment) -> bool:
        """Drop one pending segment for ``incoming``: the oldest interim, else (for a final) the
        oldest final. False when ``incoming`` itself is dropped."""
        victim = next((k for k, s in self._pending.items() if not s.is_final), None)
        if victim is None and not incoming.is_final:
            self._count_drop(1)
            return False
        if victim is None:
            victim = next(iter(self._pending))
        del self._pending[victim]
        self._count_drop(1)
        return True

    def _count_drop(self, n: int) -> None:
        if n:
            self.dropped += n
            metrics.API_ERRORS.labels("segments_dropped").inc(n)
            log.warning(
                "%d live segment(s) dropped (the api is away and %d are pending)", n, self.max_pending
            )

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = []
            while self._pending and len(batch) < MAX_SEGMENTS_PER_REQUEST:
                batch.append(self._pending.popitem(last=False)[1])
            self._in_flight = len(batch)
            try:
                await self._post(batch)
            except ApiClosedError:
                self._count_drop(len(batch))
                self._idle.set()
                return
            except Exception:  # a bug must not stop the publisher: log it, lose this batch only
                log.exception("posting %d live segment(s) failed", len(batch))
                self._count_drop(len(batch))
            finally:
                self._in_flight = 0

    async def _post(self, batch: list[LiveSegment]) -> None:
        try:
            await self.api.post_segments(batch)
            self.posted += len(batch)
        except ApiRejectedError as e:
            if len(batch) == 1 or e.status_code not in (413, 422):
                log.error("%d live segment(s) refused by the api: %s", len(batch), e)
                self._count_drop(len(batch))
                return
            for segment in batch:  # one bad (or one new, past LIVE_MAX_SEGMENTS) must not lose the others
                await self._post([segment])

    async def aclose(self) -> None:
        """Post what is pending (for at most ``close_timeout`` s), then stop."""
        self._closing = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), self.close_timeout)
        except TimeoutError:
            log.warning(
                "api segment publisher closed with %d segment(s) unsent", len(self._pending) + self._in_flight
            )
        in_flight = self._in_flight
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._count_drop(len(self._pending) + in_flight)
        self._pending.clear()
