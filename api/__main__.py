"""``python -m api``: serve the api with uvicorn on API_HOST:API_PORT (default 127.0.0.1:8000)."""

from __future__ import annotations

import os

import uvicorn

from api.core.config import API_PORT


def main() -> None:
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=os.environ.get("API_HOST", "127.0.0.1"),
        port=int(os.environ.get("API_PORT", API_PORT)),
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )


if __name__ == "__main__":
    main()
