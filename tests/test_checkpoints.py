"""The database file: where it is, plait's own tables behind numbered migrations, the pragmas a
run relies on, the thread index, and refusing files that are not SQLite."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from plait.checkpoints import open_database, resolve_db_path
from plait.checkpoints import threads as thread_index
from plait.checkpoints.threads import MIGRATIONS
from plait.errors import DatabaseError, ExitCode

PLAIT_THREADS = [
    # (name, type, notnull, default, primary key)
    ("thread_id", "TEXT", 0, None, 1),
    ("graph", "TEXT", 1, None, 0),
    ("task", "TEXT", 1, None, 0),
    ("settings", "TEXT", 1, None, 0),
    ("status", "TEXT", 1, None, 0),
    ("error", "TEXT", 0, None, 0),
    ("tokens", "INTEGER", 1, "0", 0),
    ("created_at", "REAL", 1, None, 0),
    ("updated_at", "REAL", 1, None, 0),
    ("owner", "TEXT", 0, None, 0),
    ("input", "TEXT", 0, None, 0),
    ("calls", "INTEGER", 1, "0", 0),
]


def query(db: str, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


async def opened(db) -> None:
    async with open_database(db):
        pass


def test_db_flag_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAIT_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(tmp_path / "flag.db") == tmp_path / "flag.db"


def test_plait_db_wins_over_the_user_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAIT_DB", str(tmp_path / "env.db"))
    assert resolve_db_path() == tmp_path / "env.db"


def test_the_user_default_follows_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_db_path() == tmp_path / "xdg" / "plait" / "plait.db"


def test_without_xdg_data_home_the_default_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_db_path() == tmp_path / ".local" / "share" / "plait" / "plait.db"
    assert resolve_db_path("~/mine.db") == tmp_path / "mine.db"


async def test_opening_creates_the_database_and_its_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "fresh"))
    await opened(None)
    assert (tmp_path / "fresh" / "plait" / "plait.db").is_file()


async def test_plait_tables_have_the_exact_schema(db):
    await opened(db)
    columns = query(db, "PRAGMA table_info(plait_threads)")
    assert [row[1:] for row in columns] == PLAIT_THREADS
    plait_objects = query(
        db, "SELECT type, name FROM sqlite_master WHERE name LIKE 'plait%' ORDER BY name"
    )
    assert plait_objects == [
        ("table", "plait_migrations"),
        ("table", "plait_threads"),
        ("index", "plait_threads_updated"),
    ]
    assert query(db, "PRAGMA index_info(plait_threads_updated)")[0][2] == "updated_at"
    versions = [v for (v,) in query(db, "SELECT version FROM plait_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    # LangGraph's own tables live in the same file.
    tables = {name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"checkpoints", "writes"} <= tables


async def test_migrating_twice_is_a_no_op(db):
    async with open_database(db) as database:
        await database.threads.create("t1", "review", "task", {"model": "demo"})
        before = query(db, "SELECT * FROM plait_migrations")
        await database.threads.migrate()
    await opened(db)
    assert query(db, "SELECT * FROM plait_migrations") == before
    assert query(db, "SELECT thread_id FROM plait_threads") == [("t1",)]


async def test_a_new_migration_is_applied_once_on_top_of_the_old_ones(db, monkeypatch):
    async with open_database(db) as database:
        await database.threads.create("t1", "review", "task", {})
    added = ("ALTER TABLE plait_threads ADD COLUMN note TEXT",)
    monkeypatch.setattr(thread_index, "MIGRATIONS", (*MIGRATIONS, added))
    await opened(db)
    await opened(db)
    versions = [v for (v,) in query(db, "SELECT version FROM plait_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 2))
    assert query(db, "SELECT thread_id, note FROM plait_threads") == [("t1", None)]


async def test_the_connection_uses_wal_normal_sync_and_a_busy_timeout(db):
    async with open_database(db) as database:
        conn = database.saver.conn
        pragmas = {}
        for name in ("journal_mode", "synchronous", "busy_timeout"):
            async with conn.execute(f"PRAGMA {name}") as cursor:
                (pragmas[name],) = await cursor.fetchone()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30_000}
    assert query(db, "PRAGMA journal_mode") == [("wal",)]  # WAL is a property of the file


@pytest.fixture
def clock(monkeypatch):
    # A fake clock makes "newest first" deterministic without sleeping.
    ticks = itertools.count(1000.0)

    class Clock:
        @staticmethod
        def time() -> float:
            return next(ticks)

    monkeypatch.setattr(thread_index, "time", Clock)


async def test_thread_index_create_get_update_list_delete(db, clock):
    settings = {"model": "demo", "options": {"max_iterations": 2}}
    async with open_database(db) as index_db:
        threads = index_db.threads
        await threads.create("a", "review", "task a", settings)
        await threads.create("b", "pipeline", "task b", {})
        await threads.create("c", "orchestrator", "task c", {})
        record = await threads.get("a")
        assert (record.thread_id, record.graph, record.task) == ("a", "review", "task a")
        assert (record.settings, record.status, record.error, record.tokens) == (
            settings,
            "running",
            None,
            0,
        )
        assert record.created_at == record.updated_at
        assert record.as_json()["settings"] == settings

        await threads.update("a", status="failed", error="boom", tokens=42)
        await threads.update("b", status="done", tokens=7, settings={"model": "openai:m"})
        failed = await threads.get("a")
        assert (failed.status, failed.error, failed.tokens) == ("failed", "boom", 42)
        assert failed.updated_at > failed.created_at
        assert (await threads.get("b")).settings == {"model": "openai:m"}

        assert [r.thread_id for r in await threads.list()] == ["b", "a", "c"]  # newest first
        assert [r.thread_id for r in await threads.list(status="failed")] == ["a"]
        assert [r.thread_id for r in await threads.list(status="running")] == ["c"]
        assert await threads.list(status="waiting") == []
        assert [r.thread_id for r in await threads.list(limit=2)] == ["b", "a"]

        await threads.delete("a")
        assert await threads.get("a") is None
        assert await threads.get("never") is None
        assert [r.thread_id for r in await threads.list()] == ["b", "c"]


@pytest.mark.parametrize(
    "content",
    [b"my precious notes\n", b"\x89PNG\r\n\x1a\n" + bytes(range(256))],
    ids=["text", "binary"],
)
async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path, content):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(DatabaseError) as raised:
        await opened(path)
    assert "is not a SQLite database" in str(raised.value)
    assert raised.value.exit_code == ExitCode.DATABASE
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal or -shm


async def test_a_corrupt_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "broken.db"
    content = b"SQLite format 3\x00" + bytes(range(256)) * 8
    path.write_bytes(content)
    with pytest.raises(DatabaseError, match="cannot use database"):
        await opened(path)
    assert path.read_bytes() == content


async def test_an_empty_file_becomes_a_database(tmp_path):
    path = tmp_path / "touched.db"
    path.touch()
    await opened(path)
    assert Path(path).read_bytes().startswith(b"SQLite format 3\x00")
