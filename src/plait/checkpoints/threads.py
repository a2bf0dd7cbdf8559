"""plait's thread index: what each thread was started with and where it stands.

LangGraph's tables hold the checkpoints; this table holds what they do not: the graph, task
and settings to rebuild the run on resume, and a status to list threads by. Its schema grows
only by appending to ``MIGRATIONS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiosqlite

from plait.errors import DatabaseError

# Each migration is a list of statements, applied with its version row in one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE plait_threads (
            thread_id TEXT PRIMARY KEY,
            graph TEXT NOT NULL,
            task TEXT NOT NULL,
            settings TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            tokens INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX plait_threads_updated ON plait_threads (updated_at)",
    ),
    # owner: "host:pid" of the process running the thread, so two resumes cannot both run it;
    # input: the --input text, so a thread killed before its first checkpoint can restart.
    (
        "ALTER TABLE plait_threads ADD COLUMN owner TEXT",
        "ALTER TABLE plait_threads ADD COLUMN input TEXT",
    ),
    # calls: model requests sent and not refused, counted before each is sent, so a call in
    # flight at a crash (paid for, its reply lost) still counts against --max-calls on resume.
    ("ALTER TABLE plait_threads ADD COLUMN calls INTEGER NOT NULL DEFAULT 0",),
)

# Who runs a thread ("host:pid"): two resumes of one thread must not both run it.
OWNER = f"{socket.gethostname()}:{os.getpid()}"


class ThreadStatus(StrEnum):
    """Where a thread stands; stored, listed and printed (``--json`` too) as its value."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    WAITING = "waiting"  # for a person: an --approve-before pause or an agent's question
    BUDGET = "budget"
    REJECTED = "rejected"
    FORKED = "forked"  # made by `threads fork`, not run yet


@dataclass
class ThreadRecord:
    """One row of the thread index."""

    thread_id: str
    graph: str
    task: str
    settings: dict[str, Any]
    status: ThreadStatus
    error: str | None
    tokens: int
    created_at: float
    updated_at: float
    owner: str | None = None
    input: str | None = None
    calls: int = 0  # requests sent and not refused, whether or not their reply was saved

    def running_elsewhere(self) -> bool:
        """True while another live process on this machine runs the thread.

        A process on another host cannot be checked, so its threads count as not running;
        neither does this process itself.
        """
        host, _, pid = (self.owner or "").rpartition(":")
        if self.status != ThreadStatus.RUNNING or host != socket.gethostname() or not pid.isdigit():
            return False
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def as_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        del data["input"]  # can be a whole document; `threads show` is about the run
        return data


_COLUMNS = (
    "thread_id, graph, task, settings, status, error, tokens, created_at, updated_at, owner, "
    "input, calls"
)


def _record(row: Iterable[Any]) -> ThreadRecord:
    values = list(row)
    values[3] = json.loads(values[3])
    values[4] = ThreadStatus(values[4])
    return ThreadRecord(*values)


class ThreadIndex:
    """The ``plait_threads`` table, sharing the saver's connection and lock."""

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self.conn, self.lock = conn, lock
        self._calls: dict[str, int] = {}  # requests counted, not yet written
        self._flush: asyncio.Future[None] | None = None

    async def migrate(self) -> None:
        """Apply the migrations this file has not seen yet.

        ``BEGIN IMMEDIATE`` takes the write lock before the version is read, so of several
        processes opening a new file at once, one migrates and the others then see it done.
        """
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS plait_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
                )
                async with self.conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM plait_migrations"
                ) as cur:
                    row = await cur.fetchone()
                assert row is not None  # an aggregate without GROUP BY yields one row
                (done,) = row
                if done > len(MIGRATIONS):
                    # Its tables may have columns this plait would leave unset or misread:
                    # refuse before writing anything rather than half-understand them.
                    raise DatabaseError(
                        f"created by a newer plait (schema {done}, this plait knows up to "
                        f"{len(MIGRATIONS)}); upgrade plait"
                    )
                for version, statements in enumerate(MIGRATIONS[done:], start=done + 1):
                    for statement in statements:
                        await self.conn.execute(statement)
                    await self.conn.execute(
                        "INSERT INTO plait_migrations VALUES (?, ?)", (version, time.time())
                    )
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    async def create(
        self,
        thread_id: str,
        graph: str,
        task: str,
        settings: dict[str, Any],
        *,
        status: ThreadStatus = ThreadStatus.RUNNING,
        owner: str | None = None,
        input: str | None = None,
    ) -> bool:
        """Add a thread; False (and nothing written) when ``thread_id`` is taken."""
        from plait.secrets import scrub

        settings = scrub(settings)  # the URLs were checked; this is the net under that check
        now = time.time()
        async with self.lock:
            cursor = await self.conn.execute(
                f"INSERT OR IGNORE INTO plait_threads ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, 0)",
                (thread_id, graph, task, json.dumps(settings), status, now, now, owner, input),
            )
            await self.conn.commit()
        return cursor.rowcount == 1

    async def claim(self, record: ThreadRecord, owner: str) -> bool:
        """Mark ``record`` running under ``owner`` unless it changed since it was read.

        A compare-and-swap on (status, owner): of two processes resuming one thread at once,
        exactly one wins.
        """
        async with self.lock:
            cursor = await self.conn.execute(
                "UPDATE plait_threads SET status = ?, owner = ?, error = NULL, "
                "updated_at = ? WHERE thread_id = ? AND status = ? AND owner IS ?",
                (
                    ThreadStatus.RUNNING,
                    owner,
                    time.time(),
                    record.thread_id,
                    record.status,
                    record.owner,
                ),
            )
            await self.conn.commit()
        return cursor.rowcount == 1

    async def get(self, thread_id: str) -> ThreadRecord | None:
        async with (
            self.lock,
            self.conn.execute(
                f"SELECT {_COLUMNS} FROM plait_threads WHERE thread_id = ?", (thread_id,)
            ) as cur,
        ):
            row = await cur.fetchone()
        return _record(row) if row else None

    async def update(self, thread_id: str, **fields: Any) -> None:
        """Set ``status``, ``error``, ``tokens``, ``owner`` or ``settings``; ``updated_at`` too.

        The error and settings are redacted first: an endpoint's error may echo its key.
        """
        from plait.secrets import redact, scrub

        if fields.get("error"):
            fields["error"] = redact(fields["error"])
        if "settings" in fields:
            fields["settings"] = json.dumps(scrub(fields["settings"]))
        assignments = ", ".join(f"{name} = ?" for name in fields)
        async with self.lock:
            await self.conn.execute(
                f"UPDATE plait_threads SET {assignments}, updated_at = ? WHERE thread_id = ?",
                (*fields.values(), time.time(), thread_id),
            )
            await self.conn.commit()

    async def count_calls(self, thread_id: str, count: int) -> None:
        """Count ``count`` model requests of a thread (negative: refused, unpaid), durably.

        Called before each request is sent: a request killed in flight was paid for but its
        reply never reached the state, and counted here it still counts against
        ``--max-calls`` on resume. Requests that start in the same turn of the event loop, in
        any thread, share one commit, so a fan-out or a batch of runs costs one write.
        """
        self._calls[thread_id] = self._calls.get(thread_id, 0) + count
        if self._flush is None:
            self._flush = asyncio.ensure_future(self._write_calls())
        await asyncio.shield(self._flush)

    async def _write_calls(self) -> None:
        await asyncio.sleep(0)  # let the other requests starting in this turn join
        counts, self._calls, self._flush = self._calls, {}, None
        async with self.lock:
            await self.conn.executemany(
                "UPDATE plait_threads SET calls = calls + ? WHERE thread_id = ?",
                [(count, thread_id) for thread_id, count in counts.items() if count],
            )
            await self.conn.commit()

    async def list(
        self, *, status: ThreadStatus | None = None, limit: int = 50
    ) -> list[ThreadRecord]:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        async with (
            self.lock,
            self.conn.execute(
                f"SELECT {_COLUMNS} FROM plait_threads {where} ORDER BY updated_at DESC LIMIT ?",
                (*params, limit),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [_record(row) for row in rows]

    async def delete(self, thread_id: str) -> None:
        async with self.lock:
            await self.conn.execute("DELETE FROM plait_threads WHERE thread_id = ?", (thread_id,))
            await self.conn.commit()
