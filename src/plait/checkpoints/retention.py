"""Forking threads from a past checkpoint, and pruning old threads and checkpoints.

Both work on the saver's tables directly: LangGraph has no call that copies a thread or drops
a thread's older checkpoints while keeping the latest, and both must leave the other threads
in the file untouched.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from plait.checkpoints.sqlite import Database
from plait.checkpoints.threads import ThreadRecord, ThreadStatus
from plait.errors import ThreadError, UsageError

_LINEAGE = (
    "WITH RECURSIVE lineage(id) AS ("
    " SELECT checkpoint_id FROM checkpoints"
    "  WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?"
    " UNION"
    " SELECT c.parent_checkpoint_id FROM lineage l CROSS JOIN checkpoints c"
    "  ON c.checkpoint_id = l.id"
    "  WHERE c.thread_id = ? AND c.checkpoint_ns = '' AND c.parent_checkpoint_id IS NOT NULL"
    ") "
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` to seconds.

    Raises:
        UsageError: not a number followed by one of s, m, h, d, w.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise UsageError(
            f"--older-than takes a number and a unit (s, m, h, d, w), e.g. 30d; got {text!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


async def fork_thread(
    database: Database, source: ThreadRecord, checkpoint_id: str, new_id: str
) -> None:
    """Copy ``source``'s history up to ``checkpoint_id`` into a new thread ``new_id``.

    The new thread resumes from that checkpoint; the source thread is not changed.

    Raises:
        ThreadError: the checkpoint is not one of the source thread's, or ``new_id`` exists.
    """
    if await database.threads.get(new_id):
        raise ThreadError(f"thread {new_id!r} already exists; choose another --thread")
    conn, thread = database.saver.conn, source.thread_id
    async with database.saver.lock:
        async with conn.execute(
            "SELECT 1 FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?",
            (thread, checkpoint_id),
        ) as cur:
            if await cur.fetchone() is None:
                raise ThreadError(
                    f"thread {thread!r} has no checkpoint {checkpoint_id!r}; "
                    f"`plait threads history {thread}` lists them"
                )
        await conn.execute(
            _LINEAGE + "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
            "parent_checkpoint_id, type, checkpoint, metadata) "
            "SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
            "FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
            "AND checkpoint_id IN (SELECT id FROM lineage)",
            (thread, checkpoint_id, thread, new_id, thread),
        )
        await conn.commit()
    await database.threads.create(
        new_id,
        source.graph,
        source.task,
        source.settings,
        status=ThreadStatus.FORKED,
        input=source.input,
    )


@dataclass
class PruneReport:
    """What a prune removed (or, in a dry run, would remove)."""

    threads: list[str] = field(default_factory=list)
    checkpoints: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


async def prune(
    database: Database,
    *,
    older_than: float | None = None,
    keep_last: int | None = None,
    status: ThreadStatus | None = None,
    checkpoints_only: bool = False,
    dry_run: bool = False,
) -> PruneReport:
    """Delete the threads that match (or, with ``checkpoints_only``, all but their latest
    checkpoint), then reclaim the space.

    Args:
        database: The open database.
        older_than: Only threads not updated for this many seconds.
        keep_last: Spare the newest N threads (of those the other filters select).
        status: Only threads in this state. Threads a live process is running are spared.
        checkpoints_only: Keep the threads; delete every checkpoint but the latest of each.
        dry_run: Report what would go; change nothing.

    Raises:
        UsageError: no filter given (pruning everything must be asked for explicitly).
    """
    if older_than is None and keep_last is None and status is None:
        raise UsageError("say what to prune: --older-than AGE, --keep-last N and/or --status S")
    records = await database.threads.list(status=status, limit=-1)
    if older_than is not None:
        cutoff = time.time() - older_than
        records = [r for r in records if r.updated_at < cutoff]
    if keep_last is not None:
        records = records[keep_last:]  # newest first, so these are the older ones
    records = [r for r in records if not r.running_elsewhere()]
    report = PruneReport(threads=[r.thread_id for r in records], bytes_before=_size(database.path))
    conn = database.saver.conn
    for record in records:
        report.checkpoints += await _count_doomed(conn, record.thread_id, checkpoints_only)
    if dry_run or not records:
        report.bytes_after = report.bytes_before
        return report
    for record in records:
        if checkpoints_only:
            await _drop_old_checkpoints(database, record.thread_id)
        else:
            await database.saver.adelete_thread(record.thread_id)
            await database.threads.delete(record.thread_id)
    async with database.saver.lock:
        await conn.commit()
        await conn.execute("VACUUM")
        # In WAL mode VACUUM's pages land in the -wal file; fold them back so the space is
        # really returned. An unread result row would keep a statement open, so read it.
        async with conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
            await cur.fetchall()
    report.bytes_after = _size(database.path)
    return report


def _size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


_NOT_LATEST = "checkpoint_id != (SELECT MAX(checkpoint_id) FROM checkpoints WHERE thread_id = ?)"


async def _count_doomed(conn: aiosqlite.Connection, thread_id: str, checkpoints_only: bool) -> int:
    where = f"thread_id = ? AND {_NOT_LATEST}" if checkpoints_only else "thread_id = ?"
    params = (thread_id, thread_id) if checkpoints_only else (thread_id,)
    async with conn.execute(f"SELECT count(*) FROM checkpoints WHERE {where}", params) as cur:
        row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY yields one row
    count: int = row[0]
    return count


async def _drop_old_checkpoints(database: Database, thread_id: str) -> None:
    # The latest checkpoint holds the whole state (channel values are stored inline), and its
    # pending writes are all a resume needs; older ones only serve history and forks.
    conn = database.saver.conn
    async with database.saver.lock:
        # The log's writes stay: `plait threads log` reads every message back from them.
        await conn.execute(
            f"DELETE FROM writes WHERE thread_id = ? AND channel != 'log' AND {_NOT_LATEST}",
            (thread_id, thread_id),
        )
        await conn.execute(
            f"DELETE FROM checkpoints WHERE thread_id = ? AND {_NOT_LATEST}", (thread_id, thread_id)
        )
        await conn.commit()
