"""Brute-force limits on the public auth routes, and a bound on concurrent password hashes.

Counting is the ``limits`` library's moving window, in Redis when ``REDIS_URL`` is set (every api
process shares the counts) and in process memory otherwise. Three limiters:

- failed logins per (client address, account), in tiers (``10/minute;20/hour;50/day``): each tier
  is a longer back-off, so a guesser waits a minute after 10 failures, an hour after 20...; a
  success does not reset them (a guesser who knows one password must not get a fresh budget);
- every login or registration attempt per client address (spraying many accounts);
- registrations per client address (registration tells whether an email is taken: 409).

A refused request gets 429 with ``Retry-After`` (seconds until the tightest window frees a slot).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException, status
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from api.core.config import Settings


class RateLimited(HTTPException):
    def __init__(self, retry_after: int, what: str):
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many {what}; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


class LimitTier:
    """One key space (e.g. failed logins) limited by several windows at once."""

    def __init__(self, limiter: MovingWindowRateLimiter, namespace: str, spec: str, what: str):
        self.limiter = limiter
        self.namespace = namespace
        self.items: list[RateLimitItem] = parse_many(spec)
        self.what = what

    def check(self, *key: str) -> None:
        """Raise 429 if any window is exhausted for ``key`` (nothing is counted)."""
        for item in self.items:
            if not self.limiter.test(item, self.namespace, *key):
                reset = self.limiter.get_window_stats(item, self.namespace, *key).reset_time
                raise RateLimited(max(1, math.ceil(reset - time.time())), self.what)

    def hit(self, *key: str) -> None:
        for item in self.items:
            self.limiter.hit(item, self.namespace, *key)

    def check_and_hit(self, *key: str) -> None:
        self.check(*key)
        self.hit(*key)


class AuthLimits:
    def __init__(self, settings: Settings):
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(settings.redis_url, key_prefix=f"{settings.redis_prefix}limits")
        else:
            storage = MemoryStorage()
        self.storage = storage
        limiter = MovingWindowRateLimiter(storage)
        self.login_failures = LimitTier(limiter, "login_fail", settings.login_failure_limits, "failed logins")
        self.attempts = LimitTier(limiter, "auth_attempt", settings.login_attempt_limits, "auth attempts")
        self.registrations = LimitTier(limiter, "register", settings.register_limits, "registrations")
        self.hashing = HashGate(settings.password_hash_concurrency, settings.password_hash_wait_seconds)


class HashGate:
    """At most ``n`` password hashes at once (argon2id takes ~64 MiB and tens of ms each): a flood of
    logins queues here instead of taking the memory, and gets 503 after ``wait_s``."""

    def __init__(self, n: int, wait_s: float):
        self._sem = threading.BoundedSemaphore(n)
        self.wait_s = wait_s

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._sem.acquire(timeout=self.wait_s):
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "too many sign-ins at once; retry shortly",
                headers={"Retry-After": "1"},
            )
        try:
            yield
        finally:
            self._sem.release()
