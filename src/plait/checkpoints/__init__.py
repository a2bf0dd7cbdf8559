"""Opening the checkpoint database, and plait's own thread index inside it."""

from plait.checkpoints.sqlite import Database, default_db_path, open_database, resolve_db_path
from plait.checkpoints.threads import ThreadIndex, ThreadRecord

__all__ = (
    "Database",
    "ThreadIndex",
    "ThreadRecord",
    "default_db_path",
    "open_database",
    "resolve_db_path",
)
