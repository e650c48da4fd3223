"""Everything a running api process holds, built once from settings (``app.state.ctx``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from api.blobstore import BlobStore, make_blob_store
from api.core.auth import Authenticator
from api.core.config import BlobBackend, Settings, ensure_private_dir
from api.core.ratelimit import AuthLimits
from api.db.session import Database
from api.db.types import utcnow
from api.inference import Inference
from api.jobs.queue import JobQueue
from api.jobs.store import JobStore
from api.live import LiveStore, RedisLiveStore, SqlLiveStore
from api.metrics import ApiMetrics
from api.models import Job, JobStatus


@dataclass
class AppContext:
    settings: Settings
    db: Database
    jobs: JobStore
    queue: JobQueue
    blobs: BlobStore
    live: LiveStore
    auth: Authenticator
    metrics: ApiMetrics
    auth_limits: AuthLimits
    inference: Inference | None = None  # Triton for the synchronous calls (made lazily)
    redis: object | None = None
    extras: dict = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        if not settings.database_url or settings.blob_backend is BlobBackend.local:
            ensure_private_dir(settings.data_dir)  # SQLite file, blobs, JWT secret: owner only
        db = Database(settings.resolved_database_url, echo=settings.database_echo)
        redis_client = None
        if settings.redis_url:
            import redis

            redis_client = redis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=3, socket_timeout=5
            )
            live: LiveStore = RedisLiveStore(
                redis_client, settings.redis_prefix, settings.live_ttl_seconds, settings.live_max_segments
            )
        else:  # the database: the worker that finalizes sees it too
            live = SqlLiveStore(db, settings.live_ttl_seconds, settings.live_max_segments)
        metrics = ApiMetrics()
        ctx = cls(
            settings=settings,
            db=db,
            jobs=JobStore(db, lease_seconds=settings.job_lease_seconds),
            queue=JobQueue(settings),
            blobs=make_blob_store(settings),
            live=live,
            auth=Authenticator(settings, db),
            metrics=metrics,
            auth_limits=AuthLimits(settings),
            redis=redis_client,
            inference=Inference(settings),
        )
        metrics.watch_jobs(ctx.job_counts)
        metrics.build.info(
            {
                "version": _version(),
                "auth_mode": settings.auth_mode.value,
                "database": db.dialect,
                "queue": settings.resolved_queue_backend.value,
                "blob_backend": settings.blob_backend.value,
            }
        )
        return ctx

    def job_counts(self) -> tuple[dict[str, int], float | None]:
        with self.db.session() as s:
            counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            oldest = s.scalar(select(func.min(Job.enqueued_at)).where(Job.status == JobStatus.queued.value))
        age = (utcnow() - _aware(oldest)).total_seconds() if oldest else None
        return counts, age

    def close(self) -> None:
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()


def _aware(dt):
    from datetime import timezone

    if isinstance(dt, str):  # SQLite aggregate results skip the column type
        from datetime import datetime

        dt = datetime.fromisoformat(dt)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("intrascribe")
    except Exception:
        return "0.1.0"
