"""Database: column types that work on PostgreSQL and SQLite, engine/session setup, migrations."""
