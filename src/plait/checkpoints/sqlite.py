"""The SQLite file behind every run: one connection and one saver per process.

WAL lets readers (``plait threads``) work while a run writes; ``synchronous=NORMAL`` makes a
commit durable across a process crash (SIGKILL, OOM) but not across a power cut of the
machine, which is the usual trade for a local tool: each checkpoint costs no fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from plait.checkpoints.threads import ThreadIndex
from plait.errors import DatabaseError

BUSY_TIMEOUT_MS = 30_000
_HEADER = b"SQLite format 3\x00"


def default_db_path() -> Path:
    """The per-user database: ``$XDG_DATA_HOME/plait/plait.db`` (``~/.local/share`` default)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "plait" / "plait.db"


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """``--db``, then ``PLAIT_DB``, then the per-user default."""
    chosen = db or os.environ.get("PLAIT_DB") or default_db_path()
    return Path(chosen).expanduser()


def check_db_path(path: Path) -> None:
    """Refuse paths that cannot hold plait's database, before SQLite touches them.

    Raises:
        DatabaseError: a directory, a file that is not SQLite, or a place that cannot be written.
    """
    if path.is_dir():
        raise DatabaseError(f"database path {str(path)!r} is a directory; give a file path")
    if path.exists():
        try:
            with path.open("rb") as handle:
                head = handle.read(len(_HEADER))
        except OSError as exc:
            raise DatabaseError(f"cannot read database {str(path)!r}: {exc.strerror}") from None
        if head and head != _HEADER:
            raise DatabaseError(f"{str(path)!r} is not a SQLite database; refusing to touch it")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the folder for database {str(path)!r}: {exc.strerror}"
        ) from None


def database_error(path: Path, exc: sqlite3.Error, thread_id: str | None = None) -> DatabaseError:
    """SQLite's error as one line that names the file and says what to do about it.

    Matched on SQLite's message, which is stable across versions and is also all that an
    error raised by Python code (a test, a wrapper) carries.
    """
    text = str(exc)
    then = f"then `plait resume {thread_id}`" if thread_id else "then try again"
    if "is full" in text:
        advice = f"free disk space {then}"
    elif "I/O error" in text:
        # What SQLite reports when a full disk stops its shared-memory (-shm) file growing.
        advice = f"check the disk has free space and the path is writable, {then}"
    elif "malformed" in text or "not a database" in text:
        advice = "restore it from a backup or delete it"
    elif "locked" in text or "busy" in text:
        advice = f"another process held it for over {BUSY_TIMEOUT_MS / 1000:g} s; try again later"
    elif "readonly" in text or "unable to open" in text:
        advice = "check the path is writable"
    else:
        advice = "check the file, or restore it from a backup"
    return DatabaseError(f"cannot use database {str(path)!r}: {text}; {advice}")


async def _enable_wal(conn: aiosqlite.Connection) -> None:
    # Switching a new file to WAL answers "database is locked" at once, without waiting out
    # the busy timeout, while another process is creating the same file: so wait here.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class _Saver(AsyncSqliteSaver):
    """LangGraph's saver, its SQLite errors raised as ``DatabaseError`` naming the file.

    A checkpoint that cannot be written (disk full) or read (damaged file) fails inside the
    graph's stream, where it would pass for the run failing (exit 1, "resume it"); this says
    it is the database (exit 6) without also claiming a user's own sqlite3 errors.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        super().__init__(conn)
        self.path = path

    @asynccontextmanager
    async def _faults(self, run: RunnableConfig | None = None) -> AsyncIterator[None]:
        """``run``: the config of a run's write, whose thread the advice names to resume."""
        try:
            yield
        except sqlite3.Error as exc:
            # A failed commit can leave its transaction open on the shared connection: roll it
            # back, so the thread's status written next does not commit half a checkpoint.
            async with self.lock:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self.conn.rollback()
            thread_id = (run or {}).get("configurable", {}).get("thread_id")
            raise database_error(self.path, exc, thread_id) from exc

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        async with self._faults():
            return await super().aget_tuple(config)

    async def alist(
        self, config: RunnableConfig | None, **kwargs: Any
    ) -> AsyncIterator[CheckpointTuple]:
        async with self._faults():
            async for item in super().alist(config, **kwargs):
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        async with self._faults(config):
            return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        async with self._faults(config):
            return await super().aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        async with self._faults():
            return await super().adelete_thread(thread_id)


@dataclass
class Database:
    """An open database: the LangGraph saver and plait's thread index, on one connection."""

    path: Path
    saver: AsyncSqliteSaver
    threads: ThreadIndex


@dataclass
class _Shared:
    opening: asyncio.Task[Database]
    users: int = 0


# One connection (and so one saver) per database file per event loop, shared by every run in
# the process: many concurrent threads then queue on one connection instead of fighting over
# SQLite's write lock from many.
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shared]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def open_database(db: str | os.PathLike[str] | None = None) -> AsyncIterator[Database]:
    """Open (creating if needed) the database and migrate plait's tables.

    Concurrent users in one event loop share one open database; it closes when the last
    one is done.

    Raises:
        DatabaseError: the path is unusable or the file is not a SQLite database.
    """
    path = resolve_db_path(db)
    open_here = _shared.setdefault(asyncio.get_running_loop(), {})
    key = os.path.abspath(path)
    entry = open_here.get(key)
    if entry is None:
        entry = open_here[key] = _Shared(asyncio.ensure_future(_open(path)))
    entry.users += 1
    try:
        database = await asyncio.shield(entry.opening)
        yield database
    except sqlite3.Error as exc:
        # The thread index, prune and fork use the connection directly: a fault there is the
        # database's too (exit 6), not a bug in plait (exit 1).
        raise database_error(path, exc) from exc
    finally:
        entry.users -= 1
        if entry.users == 0:
            if open_here.get(key) is entry:
                del open_here[key]
            if entry.opening.done() and not entry.opening.exception():
                await entry.opening.result().saver.conn.close()


async def _open(path: Path) -> Database:
    check_db_path(path)
    try:
        # Opened here first because aiosqlite, when it cannot open a file, stops its worker
        # thread without waiting for it, and the thread then prints two tracebacks at exit.
        sqlite3.connect(path).close()
        conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise database_error(path, exc) from None
    try:
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await _enable_wal(conn)
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = _Saver(conn, path)
        await saver.setup()
        threads = ThreadIndex(conn, saver.lock)
        await threads.migrate()
    except BaseException as exc:
        await conn.close()
        if isinstance(exc, sqlite3.Error):
            raise database_error(path, exc) from None
        if isinstance(exc, DatabaseError):  # a newer plait's schema: name the file too
            raise DatabaseError(f"database {str(path)!r} was {exc}") from None
        raise
    return Database(path, saver, threads)
