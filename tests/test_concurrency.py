"""One database, several real `plait` processes: different threads run side by side, a thread is
run by one process at a time, and an orchestrator run SIGKILLed again and again ends as an
uninterrupted run does, without calling a finished worker twice. Every model request goes to a
loopback server that counts it; every wait has a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from plait.checkpoints import open_database
from plait.checkpoints.threads import MIGRATIONS
from plait.testing import LoopbackServer, text
from processes import PLAN, env, finished_workers, plait

pytestmark = pytest.mark.slow

NO = json.dumps({"approved": False, "feedback": "more detail please"})
LONG = ["--set", "max_iterations=8", "--json"]  # eight reviews, never approved: many checkpoints
STUCK = 60.0  # a reply that never comes before the process is killed
WAIT = 60.0  # the most any one wait in these tests may take


class Proc:
    """A `plait` process whose output goes to files (a full pipe would block it)."""

    def __init__(self, argv: list[str], where: Path, name: str) -> None:
        self.out, self.err = where / f"{name}.out", where / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, env=env())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def finish(self, timeout: float = WAIT) -> int:
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


@pytest.fixture
def procs():
    """Start processes with ``procs(argv, where, name)``; any left running are killed."""
    started: list[Proc] = []

    def start(argv: list[str], where: Path, name: str) -> Proc:
        started.append(Proc(argv, where, name))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()


def wait_until(condition: Callable[[], bool], what: str, *watching: Proc) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        for proc in watching:
            assert proc.popen.poll() is None, f"{what}: process exited\n{proc.stderr()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def thread_row(db: Path, thread_id: str) -> tuple[str, str | None]:
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        ((status, owner),) = conn.execute(
            "SELECT status, owner FROM plait_threads WHERE thread_id = ?", (thread_id,)
        ).fetchall()
    return status, owner


def create(db: Path) -> None:
    async def open_once() -> None:
        async with open_database(db):
            pass

    asyncio.run(open_once())


def synthesizer_prompts(server: LoopbackServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.requests if r.role == "synthesizer"]


# --- different threads, one file -------------------------------------------------------------


def test_two_processes_run_different_threads_on_one_database(tmp_path, procs):
    db = tmp_path / "shared.db"
    create(db)  # a database in use; a brand-new one shared at once is tested below
    meet = threading.Barrier(2, timeout=WAIT)

    def respond(role: str, body: dict) -> str:
        if role == "researcher":
            meet.wait()  # neither run goes on until both are running: they overlap for sure
        return NO if role == "reviewer" else f"{role} text"

    with LoopbackServer(respond) as server:
        runs = {
            name: procs(
                plait(
                    "run", "review", f"task {name}", "--thread", name, *LONG, db=db, server=server
                ),
                tmp_path,
                name,
            )
            for name in ("left", "right")
        }
        codes = {name: proc.finish() for name, proc in runs.items()}
    for name, proc in runs.items():
        assert codes[name] == 0, proc.stderr()
        assert "locked" not in proc.stderr().lower()
        outcome = json.loads(proc.stdout())
        assert outcome["thread_id"] == name and outcome["status"] == "done"
        assert outcome["stop_reason"] == "max_iterations (8) reached without approval"
        assert thread_row(db, name) == ("done", None)
    assert {role: server.count(role) for role in ("researcher", "reviewer", "reviser")} == {
        "researcher": 2,
        "reviewer": 16,
        "reviser": 14,
    }
    assert server.violations == []


FIRST_USE = """
import asyncio, sys, time
from plait.checkpoints import open_database

async def main(path, thread_id):
    async with open_database(path) as database:
        await database.threads.create(thread_id, "pipeline", "t", {})

start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
asyncio.run(main(sys.argv[2], sys.argv[3]))
"""


def test_a_new_database_first_opened_by_several_processes_at_once(tmp_path, procs):
    # Every plait command opens the database first, creating plait's tables in a new file.
    # Processes that do so at the same instant must each get a usable database: the schema is
    # created once, whoever gets there first.
    for attempt in range(8):
        db = tmp_path / f"fresh{attempt}.db"
        start = time.time() + 2.0  # after every process has imported plait
        opened = [
            procs(
                [sys.executable, "-c", FIRST_USE, str(start), str(db), f"t{i}"],
                tmp_path,
                f"fresh{attempt}-{i}",
            )
            for i in range(4)
        ]
        for proc in opened:
            assert proc.finish() == 0, proc.stderr().strip().splitlines()[-1]
        with closing(sqlite3.connect(db)) as conn:
            created = conn.execute("SELECT thread_id FROM plait_threads").fetchall()
            versions = conn.execute("SELECT version FROM plait_migrations").fetchall()
        assert sorted(created) == [(f"t{i}",) for i in range(4)]
        assert sorted(versions) == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


# --- one thread, two resumes ----------------------------------------------------------------


def test_two_resumes_of_one_killed_thread_one_runs_and_the_other_refuses(tmp_path, procs):
    db = tmp_path / "twice.db"
    release = threading.Event()
    analyst: list[int] = []

    def respond(role: str, body: dict):
        if role == "planner":
            return PLAN
        if role == "analyst":
            analyst.append(1)
            if len(analyst) == 1:
                return text("never seen", delay=STUCK)  # in flight when the run is killed
            release.wait(timeout=WAIT)  # the resume that runs waits until the other gave up
            return "out-analysis"
        return "final answer" if role == "synthesizer" else f"out-{role}"

    with LoopbackServer(respond) as server:
        first = procs(
            plait("run", "orchestrator", "build it", "--thread", "twice", db=db, server=server),
            tmp_path,
            "run",
        )
        wait_until(
            lambda: finished_workers(db, "twice") == 2 and len(analyst) == 1,
            "two workers finished and the analyst is in flight",
            first,
        )
        first.kill()
        # The killed process still owns the thread on paper; its pid is gone, so it can resume.
        status, owner = thread_row(db, "twice")
        assert (status, owner) == ("running", f"{socket.gethostname()}:{first.pid}")

        resumes = [
            procs(plait("resume", "twice", "--json", db=db, server=server), tmp_path, f"r{i}")
            for i in (1, 2)
        ]
        deadline = time.monotonic() + WAIT
        while all(r.popen.poll() is None for r in resumes):
            assert time.monotonic() < deadline, "neither resume gave up: both are running it"
            time.sleep(0.05)
        (loser,) = [r for r in resumes if r.popen.poll() is not None]
        (winner,) = [r for r in resumes if r is not loser]
        release.set()
        assert winner.finish() == 0, winner.stderr()
        assert loser.finish() == 5, loser.stderr()

    (line,) = loser.stderr().strip().splitlines()
    assert re.fullmatch(
        r"error: thread 'twice' (is being run by process \S+:\d+; wait for it to stop, or stop "
        r"it, then resume|was resumed by another process just now)",
        line,
    ), line
    outcome = json.loads(winner.stdout())
    assert outcome["status"] == "done" and outcome["result"] == "final answer"
    assert {
        role: server.count(role)
        for role in ("planner", "researcher", "analyst", "coder", "synthesizer")
    } == {
        "planner": 1,
        "researcher": 1,
        "analyst": 2,
        "coder": 1,
        "synthesizer": 1,
    }
    assert thread_row(db, "twice") == ("done", None)


# --- the crash loop ----------------------------------------------------------------------------

ROLES = ("planner", "researcher", "analyst", "coder", "synthesizer")


def test_an_orchestrator_run_killed_four_times_ends_as_an_uninterrupted_run(tmp_path, procs):
    fast = {
        "planner": [PLAN],
        "researcher": [text("out-research", delay=0.05)],
        "analyst": [text("out-analysis", delay=0.2)],
        "coder": [text("out-code", delay=0.1)],
        "synthesizer": ["final answer"],
    }
    with LoopbackServer(fast) as baseline:
        straight = procs(
            plait(
                "run",
                "orchestrator",
                "build it",
                "--json",
                db=tmp_path / "base.db",
                server=baseline,
            ),
            tmp_path,
            "base",
        )
        assert straight.finish() == 0, straight.stderr()
    expected = json.loads(straight.stdout())
    (expected_prompt,) = synthesizer_prompts(baseline)

    stuck = text("never seen", delay=STUCK)
    script = {
        # Each worker is in flight at one kill more than the one before it; a kill ends every
        # call in flight, and the next resume calls again only the workers that had not finished.
        "planner": [PLAN],
        "researcher": [stuck, text("out-research", delay=0.05)],
        "analyst": [stuck, stuck, text("out-analysis", delay=0.2)],
        "coder": [stuck, stuck, stuck, text("out-code", delay=0.1)],
        "synthesizer": [stuck, "final answer"],
    }
    db = tmp_path / "crash.db"
    with LoopbackServer(script) as server:

        def at(**counts: int) -> Callable[[], bool]:
            return lambda: all(server.count(role) == n for role, n in counts.items())

        def done(n: int, **counts: int) -> Callable[[], bool]:
            return lambda: finished_workers(db, "crash") == n and at(**counts)()

        kills = [
            # 1. The plan is checkpointed; all three workers in flight, none finished.
            done(0, planner=1, researcher=1, analyst=1, coder=1),
            # 2. The researcher finished; the analyst and coder in flight again.
            done(1, researcher=2, analyst=2, coder=2),
            # 3. The analyst finished too; the coder in flight a third time.
            done(2, analyst=3, coder=3),
            # 4. Every worker finished; the synthesizer in flight.
            done(3, coder=4, synthesizer=1),
        ]
        command = plait(
            "run", "orchestrator", "build it", "--thread", "crash", db=db, server=server
        )
        for number, condition in enumerate(kills, 1):
            proc = procs(command, tmp_path, f"attempt{number}")
            wait_until(condition, f"kill point {number}", proc)
            proc.kill()
            assert thread_row(db, "crash") == ("running", f"{socket.gethostname()}:{proc.pid}")
            command = plait("resume", "crash", "--json", db=db, server=server)

        last = procs(command, tmp_path, "last")
        assert last.finish() == 0, last.stderr()

    outcome = json.loads(last.stdout())
    assert outcome["status"] == "done"
    assert outcome["result"] == expected["result"] == "final answer"
    assert synthesizer_prompts(server)[-1] == expected_prompt
    # A finished worker is never called again: each was called once more than the number of
    # kills that caught it in flight.
    assert {role: server.count(role) for role in ROLES} == {
        "planner": 1,
        "researcher": 2,
        "analyst": 3,
        "coder": 4,
        "synthesizer": 2,
    }
    # Only completed calls are paid for, once each, as in the uninterrupted run.
    calls = {agent: usage["calls"] for agent, usage in outcome["usage"].items()}
    assert calls == {agent: usage["calls"] for agent, usage in expected["usage"].items()}
    assert calls == dict.fromkeys(ROLES, 1)
    assert thread_row(db, "crash") == ("done", None)
