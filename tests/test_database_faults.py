"""Every fault of the database itself — a damaged page, a full disk, a newer plait's schema, a
file that cannot be created, a lock held too long — is exit 6 with one line naming the file and
what to do, never exit 1 ("resume it"); and a run the disk stopped is never left `running`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from plait.checkpoints import sqlite as plait_sqlite
from plait.checkpoints.threads import MIGRATIONS, OWNER
from plait.errors import ExitCode
from processes import env
from test_bad_input import assert_one_line_error, saved_thread  # noqa: F401

DAMAGED = ("database disk image is malformed", "restore it from a backup or delete it")

# Every command that opens the database, with the thread `keeper` (finished) as its subject.
COMMANDS = {
    "run": ["run", "review", "another task"],
    "resume": ["resume", "keeper"],
    "threads": ["threads"],
    "threads show": ["threads", "show", "keeper"],
    "threads history": ["threads", "history", "keeper"],
    "threads log": ["threads", "log", "keeper"],
    "threads prune": ["threads", "prune", "--status", "done"],
    "threads delete": ["threads", "delete", "keeper"],
    "threads fork": ["threads", "fork", "keeper", "--checkpoint", "CHECKPOINT"],
}


def plait(*args: str) -> subprocess.CompletedProcess:
    """Run the real `python -m plait` process: what a user's terminal shows, tracebacks too."""
    return subprocess.run(
        [sys.executable, "-m", "plait", *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_process(proc: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def damage(db: str, pages: list[int] | None = None) -> None:
    """Overwrite whole pages with 0xFF, as a bad sector would: ``pages`` (1-based), by default
    every page but the first, which holds the header and schema: the middle of the file.

    The WAL is checkpointed first, so the damage is to the only copy of those pages.
    """
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    data = bytearray(Path(db).read_bytes())
    count = len(data) // size
    for page in pages or range(2, count + 1):
        data[(page - 1) * size : page * size] = b"\xff" * size
    Path(db).write_bytes(data)


def root_pages(db: str, *tables: str) -> list[int]:
    with closing(sqlite3.connect(db)) as conn:
        marks = ", ".join("?" * len(tables))
        rows = conn.execute(f"SELECT rootpage FROM sqlite_master WHERE name IN ({marks})", tables)
        return [page for (page,) in rows]


def a_checkpoint(cli, thread_id: str) -> str:
    history = cli("threads", "history", thread_id, "--json")
    assert history.exit_code == 0, history.stderr
    return json.loads(history.stdout)[-1]["checkpoint"]


def show(cli, thread_id: str) -> dict:
    shown = cli("threads", "show", thread_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    return json.loads(shown.stdout)


def listed_row(cli, thread_id: str) -> str:
    """The row `plait threads` shows a person for ``thread_id``."""
    listing = cli("threads")
    assert listing.exit_code == 0, listing.stderr
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith(thread_id + " ")]
    return row


# --- a damaged page ------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.usefixtures("saved_thread")
def test_a_damaged_page_is_exit_6_for_every_command(cli, db, command):
    args = [a.replace("CHECKPOINT", a_checkpoint(cli, "keeper")) for a in COMMANDS[command]]
    damage(db)
    result = cli(*args)
    assert_one_line_error(result, ExitCode.DATABASE, repr(db), *DAMAGED)
    assert "plait resume" not in result.stderr  # nothing to resume: the file is the fault


@pytest.mark.usefixtures("saved_thread")
def test_damage_found_after_opening_is_exit_6_too(cli, db):
    # Only the checkpoints are damaged: the thread index still opens and lists, and every
    # command that reads a checkpoint says it is the database, not a bug (it used to be exit 1).
    checkpoint = a_checkpoint(cli, "keeper")
    damage(db, root_pages(db, "checkpoints", "writes"))
    for args in (
        ["threads", "show", "keeper"],
        ["threads", "history", "keeper"],
        ["threads", "log", "keeper"],
        ["threads", "fork", "keeper", "--checkpoint", checkpoint],
        ["threads", "prune", "--status", "done"],
        ["threads", "delete", "keeper"],
    ):
        assert_one_line_error(cli(*args), ExitCode.DATABASE, repr(db), *DAMAGED)
    # A new run gets as far as its first checkpoint read: the thread is marked failed, with
    # the same one line, and a resume of it is the database's fault as well.
    started = cli("run", "review", "again", "--thread", "fresh")
    assert_one_line_error(started, ExitCode.DATABASE, repr(db), *DAMAGED)
    assert "resume it" not in started.stderr
    assert_one_line_error(cli("resume", "fresh"), ExitCode.DATABASE, *DAMAGED)
    listing = cli("threads", "--json")
    assert listing.exit_code == 0, listing.stderr
    statuses = {t["thread_id"]: (t["status"], t["error"]) for t in json.loads(listing.stdout)}
    assert statuses["keeper"] == ("done", None)
    status, error = statuses["fresh"]
    assert status == "failed"
    assert DAMAGED[0] in error and "\n" not in error


@pytest.mark.usefixtures("saved_thread")
def test_a_damaged_page_in_a_real_process_prints_no_traceback(cli, db):
    damage(db)
    for args in (["threads", "show", "keeper"], ["run", "review", "t", "-q"]):
        assert_one_line_process(plait(*args, "--db", db), ExitCode.DATABASE, repr(db), *DAMAGED)


# --- a newer plait's database --------------------------------------------------------------


@pytest.mark.usefixtures("saved_thread")
def test_a_database_from_a_newer_plait_is_refused_untouched(cli, db):
    newer = len(MIGRATIONS) + 1
    with closing(sqlite3.connect(db)) as conn:
        with conn:
            conn.execute("INSERT INTO plait_migrations VALUES (?, 0)", (newer,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = Path(db).read_bytes()
    expected = (
        f"database {db!r} was created by a newer plait "
        f"(schema {newer}, this plait knows up to {len(MIGRATIONS)}); upgrade plait"
    )
    for command in ("run", "resume", "threads", "threads show", "threads delete"):
        assert_one_line_error(cli(*COMMANDS[command]), ExitCode.DATABASE, expected)
    assert Path(db).read_bytes() == before


# --- a file that cannot be created, a lock held too long, the messages -----------------------


@pytest.mark.parametrize("command", ["run", "resume", "threads", "threads show"])
def test_a_database_that_cannot_be_created_prints_one_line(command):
    # /proc refuses new files even to root. aiosqlite's worker thread used to print two
    # tracebacks at exit after the message, which only a real process shows.
    where = "/proc/plait-test.db"
    proc = plait(*COMMANDS[command], "--db", where)
    assert_one_line_process(proc, ExitCode.DATABASE, repr(where), "check the path is writable")


@pytest.mark.usefixtures("saved_thread")
def test_a_lock_held_past_the_busy_timeout_is_exit_6(cli, db, monkeypatch):
    monkeypatch.setattr(plait_sqlite, "BUSY_TIMEOUT_MS", 200)
    with closing(sqlite3.connect(db, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than we wait
        result = cli("run", "review", "t")
        holder.execute("ROLLBACK")
    assert_one_line_error(result, ExitCode.DATABASE, repr(db), "database is locked", "try again")


@pytest.mark.parametrize(
    ("sqlite_says", "advice"),
    [
        ("database or disk is full", "free disk space then `plait resume t1`"),
        (
            "disk I/O error",
            "check the disk has free space and the path is writable, then `plait resume t1`",
        ),
        ("database disk image is malformed", "restore it from a backup or delete it"),
        ("file is not a database", "restore it from a backup or delete it"),
        ("attempt to write a readonly database", "check the path is writable"),
        ("unable to open database file", "check the path is writable"),
        ("database is locked", "another process held it for over 30 s; try again later"),
    ],
)
def test_each_sqlite_fault_says_what_to_do(sqlite_says, advice):
    error = plait_sqlite.database_error(
        Path("/x/p.db"), sqlite3.OperationalError(sqlite_says), "t1"
    )
    assert error.exit_code == ExitCode.DATABASE
    assert str(error) == f"cannot use database '/x/p.db': {sqlite_says}; {advice}"


# --- a full disk -----------------------------------------------------------------------------


def fill_up_at(monkeypatch, method: str, number: int, *, every_write: bool = False) -> dict:
    """Fill the disk at the ``number``-th call of the saver's ``method`` (``aput``: a
    checkpoint, ``aput_writes``: a step's writes): from then on every checkpoint write fails
    as on a full disk; with ``every_write``, every other commit too, the thread index's
    included (otherwise its small update is taken to still fit).

    The seam is LangGraph's own ``AsyncSqliteSaver``: plait's saver and runner above it are
    the code under test. Returns the switch: ``full["on"] = False`` frees the disk.
    """
    full = {"on": False, "calls": 0}
    commit = aiosqlite.Connection.commit

    def failing(name: str):
        write = getattr(AsyncSqliteSaver, name)

        async def full_write(self, *args, **kwargs):
            if name == method:
                full["calls"] += 1
                full["on"] = full["on"] or full["calls"] == number
            if full["on"]:
                raise sqlite3.OperationalError("database or disk is full")
            return await write(self, *args, **kwargs)

        return full_write

    async def full_commit(self):
        if full["on"] and every_write:
            raise sqlite3.OperationalError("database or disk is full")
        return await commit(self)

    for name in ("aput", "aput_writes"):
        monkeypatch.setattr(AsyncSqliteSaver, name, failing(name))
    monkeypatch.setattr(aiosqlite.Connection, "commit", full_commit)
    return full


def assert_sound(db: str) -> None:
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def assert_resumes_to_done(cli, thread_id: str) -> None:
    resumed = cli("resume", thread_id, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "done"
    assert show(cli, thread_id)["status"] == "done"


def test_a_full_disk_mid_run_fails_the_thread_and_resume_finishes_it(cli, db, monkeypatch):
    full = fill_up_at(monkeypatch, "aput_writes", 2)  # the second step's writes
    stopped = cli("run", "review", "fill the disk", "--thread", "full")
    assert_one_line_error(
        stopped, ExitCode.DATABASE, repr(db), "database or disk is full", "`plait resume full`"
    )
    assert "the thread is saved" not in stopped.stderr  # the run did not fail: the disk did
    shown = show(cli, "full")
    assert (shown["status"], shown["owner"]) == ("failed", None)
    assert "database or disk is full; free disk space then `plait resume full`" in shown["error"]
    assert shown["tokens"] > 0  # the first step's work is counted and kept
    assert_sound(db)

    full["on"] = False
    assert_resumes_to_done(cli, "full")


def test_a_full_disk_between_a_steps_writes_and_its_checkpoint(cli, db, monkeypatch):
    full = fill_up_at(monkeypatch, "aput", 3)  # the checkpoint after the first step
    stopped = cli("run", "review", "fill the disk", "--thread", "full")
    assert_one_line_error(stopped, ExitCode.DATABASE, "database or disk is full")
    assert show(cli, "full")["status"] == "failed"
    full["on"] = False
    assert_resumes_to_done(cli, "full")


def test_a_disk_that_stays_full_never_leaves_the_thread_shown_running(cli, db, monkeypatch):
    full = fill_up_at(monkeypatch, "aput_writes", 2, every_write=True)
    stopped = cli("run", "review", "fill the disk", "--thread", "full")
    assert_one_line_error(stopped, ExitCode.DATABASE, "database or disk is full", "plait resume")
    # The failed status could not be written either: the row still says running, under this
    # process (in a real one, a process that has exited) ...
    assert_sound(db)
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT status, owner FROM plait_threads WHERE thread_id = 'full'")
        assert row.fetchone() == ("running", OWNER)
    # ... and the listing says that process is gone, not that the thread runs.
    full["on"] = False
    assert "running (process gone: resume it)" in listed_row(cli, "full")
    assert_resumes_to_done(cli, "full")


def test_threads_show_of_a_run_the_disk_stopped_does_not_say_running(cli, monkeypatch):
    full = fill_up_at(monkeypatch, "aput_writes", 2, every_write=True)
    cli("run", "review", "fill the disk", "--thread", "full")
    full["on"] = False
    shown = cli("threads", "show", "full")
    assert shown.exit_code == 0, shown.stderr
    assert "running (process gone: resume it)" in shown.stdout.splitlines()[0]


def test_a_failing_node_of_its_own_sqlite_is_still_a_failed_run(cli, tmp_path):
    # Told apart by where it comes from, not by its words: a graph's own database error is the
    # run failing (exit 1, resume it), even when it reads exactly like plait's disk being full.
    graph = tmp_path / "own_db.py"
    graph.write_text(
        "import sqlite3\n"
        "from langgraph.graph import END, START, StateGraph\n"
        "from plait import CommonState, PlaitContext\n\n"
        "def lookup(state):\n"
        "    raise sqlite3.OperationalError('database or disk is full')\n\n"
        "def build():\n"
        "    builder = StateGraph(CommonState, context_schema=PlaitContext)\n"
        "    builder.add_node('lookup', lookup)\n"
        "    builder.add_edge(START, 'lookup')\n"
        "    builder.add_edge('lookup', END)\n"
        "    return builder\n"
    )
    result = cli("run", f"{graph}:build", "t", "--thread", "own")
    assert_one_line_error(result, ExitCode.FAILED, "OperationalError: database or disk is full")
    assert "plait resume own" in result.stderr
    assert show(cli, "own")["status"] == "failed"


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, mounted for this test only (root only); skipped where it cannot be."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up but ``leave`` bytes; returns the filler, whose removal frees it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\x01" * 65536)
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_real_full_disk(small_disk):
    db = str(small_disk / "plait.db")
    assert plait("run", "review", "first", "-q", "--thread", "first", "--db", db).returncode == 0
    filler = fill(small_disk, 96 * 1024)  # room for the thread's row, not for its whole run

    stopped = plait("run", "review", "second", "--thread", "second", "--db", db)
    assert_one_line_process(stopped, ExitCode.DATABASE, repr(db), "free")
    listing = plait("threads", "--db", db)
    if listing.returncode == 0 and "second" in listing.stdout:
        # The run got going before the disk filled: the thread is failed if its status could
        # still be written, else shown with its process gone; never as running.
        (row,) = [line for line in listing.stdout.splitlines() if line.startswith("second ")]
        assert " failed " in row or "running (process gone: resume it)" in row, row
        assert "`plait resume second`" in stopped.stderr
    else:  # too full even to list: the same one line
        assert_one_line_process(listing, ExitCode.DATABASE, repr(db), "free")

    filler.unlink()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        known = {row[0] for row in conn.execute("SELECT thread_id FROM plait_threads")}
    finished = plait("resume", "second", "--json", "--db", db) if "second" in known else None
    if finished is not None:
        assert finished.returncode == 0, finished.stderr
        assert json.loads(finished.stdout)["status"] == "done"
    assert plait("run", "review", "third", "-q", "--db", db).returncode == 0
