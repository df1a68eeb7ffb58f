"""Storage: SQLAlchemy Core over SQLite or PostgreSQL, migrated by Alembic."""

from connector.store.base import Backend, Store, backend_for

__all__ = ["Backend", "Store", "backend_for"]
