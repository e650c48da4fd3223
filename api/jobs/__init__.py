"""Durable background jobs.

* ``store``  — the jobs table: claim / heartbeat / checkpoint / finish as conditional UPDATEs.
* ``kinds``  — the registry of job handlers (``@job_kind("name")``) and the errors they raise.
* ``runner`` — runs one job in a worker: claim, heartbeat thread, handler, final transition.
* ``queue``  — huey: dispatches wake-ups ("run job X") and retries them; Redis or SQLite broker.
* ``reaper`` — re-queues jobs whose lease expired (their worker died) and lost wake-ups.

The job row is the truth; the queue carries no state a restart could lose. See docs/jobs.md.
"""
