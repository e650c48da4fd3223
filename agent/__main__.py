"""``python -m agent start|dev``: the LiveKit agent worker (agent/worker.py, docs/agent.md).

``start`` is production mode (JSON logs, one warm job process, load limit); ``dev`` is livekit-agents'
development mode (coloured DEBUG logs, no warm process, no load limit). LiveKit's address and
credentials, the agent name and everything else come from the environment (agent/config.py,
``.env.example``).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent", description="The Intrascribe LiveKit agent worker (docs/agent.md)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("start", "run the worker (production)"),
        ("dev", "run the worker in development mode"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--log-level", default=os.environ.get("LIVEKIT_LOG_LEVEL"), help="default: INFO (dev: DEBUG)"
        )
        p.add_argument(
            "--log-format", choices=["json", "colored"], default=None, help="default: json (dev: colored)"
        )
    args = parser.parse_args(argv)
    dev = args.command == "dev"

    # livekit-agents' worker runner: the same call its own `python -m livekit.agents start` makes
    from livekit.agents.cli import proto
    from livekit.agents.cli.cli import _run_worker

    from agent.config import get_settings
    from agent.worker import build_server

    settings = get_settings()
    if not settings.livekit_url:
        print("LIVEKIT_URL is not set: the agent needs a LiveKit server (see .env.example)", file=sys.stderr)
        return 2
    server = build_server(settings)
    _run_worker(
        server,
        proto.CliArgs(
            log_level=(args.log_level or ("DEBUG" if dev else "INFO")).upper(),
            log_format=args.log_format or ("colored" if dev else "json"),
            dev=dev,
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
