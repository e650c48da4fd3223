"""The Intrascribe orchestrator: FastAPI app (``api.main:create_app``), job worker (``api.worker``),
database and migrations (``api.db``, ``api/migrations``). See docs/api.md."""
