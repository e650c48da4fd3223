"""A stand-in api process for the multi-process job tests: creates jobs and dispatches them (twice,
to prove a duplicate wake-up is harmless). Settings come from the environment, as in the api.

    python -m tests.api.job_client USER_ID COUNT CHUNKS SECONDS LOG_PATH
"""

from __future__ import annotations

import sys
import uuid

from api.core.config import get_settings
from api.db.session import Database
from api.jobs.queue import JobQueue
from api.jobs.store import JobStore


def main(argv: list[str]) -> None:
    user_id, count, chunks, seconds, log_path = (
        uuid.UUID(argv[0]),
        int(argv[1]),
        int(argv[2]),
        float(argv[3]),
        argv[4],
    )
    settings = get_settings()
    db = Database(settings.resolved_database_url)
    queue = JobQueue(settings)
    for _ in range(count):
        with db.session() as s:
            job = JobStore.create(
                s,
                "sleep_chunks",
                {"chunks": chunks, "seconds": seconds, "log_path": log_path},
                user_id=user_id,
            )
        queue.dispatch(job.id)
        queue.dispatch(job.id)
        print(job.id, flush=True)
    db.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
