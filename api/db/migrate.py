"""Run the api's Alembic migrations programmatically.

python -m api.db.migrate upgrade [REVISION]     # default head
python -m api.db.migrate downgrade REVISION     # e.g. base
python -m api.db.migrate current
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # '%' is interpolation syntax in ConfigParser
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


@functools.lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration in this package (what a ready database is at)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("upgrade", "downgrade", "current"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "upgrade":
        upgrade(revision=argv[1] if len(argv) > 1 else "head")
    elif argv[0] == "downgrade":
        if len(argv) < 2:
            print("downgrade needs a revision (e.g. base)", file=sys.stderr)
            return 2
        downgrade(revision=argv[1])
    else:
        command.current(alembic_config(), verbose=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
