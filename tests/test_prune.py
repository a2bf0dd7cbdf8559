"""Retention: `plait threads prune` deletes whole threads (by age, count or status) or only
their old checkpoints, reclaims the space, never touches a running thread, and leaves what it
keeps showable and resumable. Plus what a long run costs in storage."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from plait import PlaitContext, RunFailed, RunSettings, resume, run
from plait.errors import ExitCode
from plait.testing import ScriptedChatModel

DAY = 86400
TABLES = ("plait_threads", "checkpoints", "writes")
PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "role": "researcher", "description": "find facts"},
            {"id": "s2", "role": "analyst", "description": "weigh options"},
            {"id": "s3", "role": "coder", "description": "sketch code"},
        ]
    }
)


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def query(db: str, sql: str, *params) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def execute(db: str, sql: str, *params) -> None:
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(sql, params)


def rows(db: str, thread_id: str) -> dict[str, int]:
    return {
        table: query(db, f"SELECT count(*) FROM {table} WHERE thread_id = ?", thread_id)[0][0]
        for table in TABLES
    }


def everything(db: str) -> dict[str, list[tuple]]:
    return {table: query(db, f"SELECT * FROM {table} ORDER BY 1, 2, 3") for table in TABLES}


def age(db: str, thread_id: str, days: float) -> None:
    execute(
        db,
        "UPDATE plait_threads SET updated_at = ? WHERE thread_id = ?",
        time.time() - days * DAY,
        thread_id,
    )


def thread_ids(db: str) -> list[str]:
    return sorted(r[0] for r in query(db, "SELECT thread_id FROM plait_threads"))


async def fail(db: str, thread_id: str) -> None:
    model = ScriptedChatModel({"extract": [RuntimeError("endpoint fell over")]})
    with model, pytest.raises(RunFailed):
        await run("pipeline", "t", db=db, thread_id=thread_id, context=PlaitContext(model=model))


@pytest.fixture
def mixed(db) -> dict[str, str]:
    """Threads of every kind, half of them 40 days old; returns their statuses."""

    async def make() -> None:
        for name in ("old-done", "old-done-2", "new-done"):
            await run("pipeline", f"task of {name}", db=db, thread_id=name)
        for name in ("old-failed", "new-failed"):
            await fail(db, name)
        waiting = RunSettings(approve_before=["transform"])
        await run("pipeline", "t", db=db, thread_id="old-waiting", settings=waiting)
        await run("pipeline", "t", db=db, thread_id="new-waiting", settings=waiting)

    asyncio.run(make())
    for name in ("old-done", "old-done-2", "old-failed", "old-waiting"):
        age(db, name, 40)
    return dict(query(db, "SELECT thread_id, status FROM plait_threads"))


def test_the_mixed_threads_are_what_the_tests_assume(mixed):
    assert mixed == {
        "old-done": "done",
        "old-done-2": "done",
        "new-done": "done",
        "old-failed": "failed",
        "new-failed": "failed",
        "old-waiting": "waiting",
        "new-waiting": "waiting",
    }


def test_dry_run_reports_what_would_go_and_changes_nothing(cli, db, mixed):
    before = everything(db)
    doomed = ["old-done", "old-done-2", "old-failed", "old-waiting"]
    checkpoints = sum(rows(db, t)["checkpoints"] for t in doomed)

    report = as_json(cli("threads", "prune", "--older-than", "30d", "--dry-run", "--json"))
    assert sorted(report["threads"]) == doomed
    assert report["checkpoints"] == checkpoints
    assert report["dry_run"] is True
    assert report["bytes_after"] == report["bytes_before"] > 0

    text = ok(cli("threads", "prune", "--older-than", "30d", "--dry-run")).strip()
    assert text.startswith(f"would delete 4 thread(s) ({checkpoints} checkpoints): ")
    assert sorted(text.split(": ", 1)[1].split(", ")) == doomed
    assert everything(db) == before


def test_older_than_deletes_only_old_threads_and_the_rest_still_work(cli, db, mixed):
    kept = {t: rows(db, t) for t in ("new-done", "new-failed", "new-waiting")}
    report = as_json(cli("threads", "prune", "--older-than", "30d", "--json"))
    assert sorted(report["threads"]) == ["old-done", "old-done-2", "old-failed", "old-waiting"]
    for thread in report["threads"]:
        assert rows(db, thread) == {"plait_threads": 0, "checkpoints": 0, "writes": 0}
        assert cli("threads", "show", thread).exit_code == ExitCode.THREAD
    assert {t: rows(db, t) for t in kept} == kept
    assert thread_ids(db) == ["new-done", "new-failed", "new-waiting"]

    assert as_json(cli("threads", "show", "new-done", "--json"))["result"].startswith("[demo]")
    assert as_json(cli("resume", "new-failed", "--json"))["status"] == "done"
    assert as_json(cli("resume", "new-waiting", "--approve", "--json"))["status"] == "done"


def test_an_age_in_hours_or_minutes_is_understood(cli, db, mixed):
    age(db, "new-done", 2 / 24)  # two hours old
    report = as_json(cli("threads", "prune", "--older-than", "90m", "--dry-run", "--json"))
    assert sorted(report["threads"]) == [
        "new-done",
        "old-done",
        "old-done-2",
        "old-failed",
        "old-waiting",
    ]
    report = as_json(cli("threads", "prune", "--older-than", "1w", "--dry-run", "--json"))
    assert "new-done" not in report["threads"] and len(report["threads"]) == 4


def test_keep_last_spares_the_newest(cli, db, mixed):
    order = [
        "new-waiting",
        "new-done",
        "new-failed",
        "old-done",
        "old-done-2",
        "old-failed",
        "old-waiting",
    ]
    for rank, thread in enumerate(order):
        age(db, thread, rank)  # newest first
    report = as_json(cli("threads", "prune", "--keep-last", "2", "--json"))
    assert sorted(report["threads"]) == sorted(order[2:])
    assert thread_ids(db) == sorted(order[:2])
    assert rows(db, "new-done")["checkpoints"] > 0


def test_status_done_spares_failed_and_waiting_threads(cli, db, mixed):
    report = as_json(cli("threads", "prune", "--status", "done", "--json"))
    assert sorted(report["threads"]) == ["new-done", "old-done", "old-done-2"]
    assert thread_ids(db) == ["new-failed", "new-waiting", "old-failed", "old-waiting"]
    # Filters combine: only old failed ones.
    report = as_json(cli("threads", "prune", "--status", "failed", "--older-than", "30d", "--json"))
    assert report["threads"] == ["old-failed"]
    assert thread_ids(db) == ["new-failed", "new-waiting", "old-waiting"]


def test_checkpoints_keeps_each_thread_with_its_latest_checkpoint(cli, db, mixed):
    results = {t: as_json(cli("threads", "show", t, "--json")) for t in mixed}
    latest = {t: history(cli, t)[0] for t in mixed}
    doomed = sum(rows(db, t)["checkpoints"] - 1 for t in ("old-done", "old-done-2", "new-done"))

    report = as_json(cli("threads", "prune", "--checkpoints", "--status", "done", "--json"))
    assert sorted(report["threads"]) == ["new-done", "old-done", "old-done-2"]
    assert report["checkpoints"] == doomed
    for thread in report["threads"]:
        assert rows(db, thread)["checkpoints"] == 1
        assert history(cli, thread) == [latest[thread]]
        assert as_json(cli("threads", "show", thread, "--json")) == results[thread]
        assert "[demo] canned format output" in ok(cli("threads", "show", thread))
    assert rows(db, "new-failed")["checkpoints"] > 1  # not selected, not touched
    text = ok(cli("threads", "prune", "--checkpoints", "--status", "done"))
    assert text.startswith("deleted 0 old checkpoint(s) of 3 thread(s)")


def history(cli, thread_id: str) -> list[dict]:
    return as_json(cli("threads", "history", thread_id, "--json"))


def test_a_failed_thread_pruned_to_its_latest_checkpoint_resumes_to_the_same_result(cli, db):
    first = ScriptedChatModel(
        {
            "planner": [PLAN],
            "researcher": ["out-research"],
            "analyst": [RuntimeError("endpoint fell over")],
            "coder": ["out-code"],
        }
    )
    with first, pytest.raises(RunFailed):
        asyncio.run(
            run(
                "orchestrator",
                "build it",
                db=db,
                thread_id="broken",
                context=PlaitContext(model=first),
            )
        )
    assert rows(db, "broken")["checkpoints"] > 1

    report = as_json(cli("threads", "prune", "--checkpoints", "--status", "failed", "--json"))
    assert report["threads"] == ["broken"]
    assert rows(db, "broken")["checkpoints"] == 1
    assert as_json(cli("threads", "show", "broken", "--json"))["status"] == "failed"

    # The finished workers' outputs were pending writes of the latest checkpoint: kept, so
    # only the failed worker and the synthesizer are called.
    second = ScriptedChatModel({"analyst": ["out-analysis"], "synthesizer": [synthesize]})
    with second:
        outcome = asyncio.run(resume("broken", db=db, context=PlaitContext(model=second)))
    assert outcome.status == "done"
    assert outcome.result == "SYNTH out-research | out-analysis | out-code"
    assert {a: u["calls"] for a, u in outcome.usage.items()} == {
        "planner": 1,
        "researcher": 1,
        "analyst": 1,
        "coder": 1,
        "synthesizer": 1,
    }


def synthesize(messages) -> str:
    prompt = messages[-1].content
    return "SYNTH " + " | ".join(line for line in prompt.splitlines() if line.startswith("out-"))


def test_a_paused_review_pruned_to_its_latest_checkpoint_can_still_be_approved(cli, db):
    paused = cli(
        "run",
        "review",
        "explain CAP",
        "--set",
        "human_review=true",
        "--thread",
        "hr",
        "--model",
        "demo",
    )
    assert paused.exit_code == ExitCode.WAITING
    ok(cli("threads", "prune", "--checkpoints", "--status", "waiting"))
    assert rows(db, "hr")["checkpoints"] == 1
    done = as_json(cli("resume", "hr", "--approve", "--json"))
    assert done["stop_reason"] == "approved by a person after 1 review(s)"


def test_deleting_a_lot_makes_the_file_smaller(cli, db):
    big = "lorem ipsum " * 2000  # every checkpoint carries the task

    async def make() -> None:
        for i in range(12):
            await run("pipeline", f"{i} {big}", db=db, thread_id=f"big{i}")
        await run("pipeline", "small", db=db, thread_id="small")

    asyncio.run(make())
    age(db, "small", -1)  # the newest
    report = as_json(cli("threads", "prune", "--keep-last", "1", "--json"))
    assert len(report["threads"]) == 12
    assert report["bytes_after"] < report["bytes_before"] / 4
    assert thread_ids(db) == ["small"]
    text = ok(cli("threads", "prune", "--keep-last", "0", "--status", "failed"))
    assert "database: " in text  # nothing matched, and the sizes are still reported


def test_prune_without_a_filter_or_with_bad_values_is_refused(cli, db, mixed):
    before = everything(db)
    cases = [
        ((), "error: say what to prune: --older-than AGE, --keep-last N and/or --status S"),
        (("--checkpoints",), "error: say what to prune"),
        (("--older-than", "soon"), "error: --older-than takes a number and a unit"),
        (("--older-than", "30"), "error: --older-than takes a number and a unit"),
        (("--status", "finished"), "error: unknown status 'finished'; choose one of"),
    ]
    for args, message in cases:
        refused = cli("threads", "prune", *args)
        assert refused.exit_code == ExitCode.USAGE, (args, refused.stderr)
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith(message), line
    assert cli("threads", "prune", "--keep-last", "-1").exit_code == ExitCode.USAGE
    assert everything(db) == before


@pytest.fixture
def live_pid():
    """The pid of another live process on this machine (the runner treats its own pid as gone)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield child.pid
    child.kill()
    child.wait(timeout=10)


def test_a_running_thread_is_never_pruned(cli, db, mixed, live_pid):
    owner = f"{socket.gethostname()}:{live_pid}"
    execute(
        db,
        "UPDATE plait_threads SET status = 'running', owner = ? WHERE thread_id = ?",
        owner,
        "old-done",
    )
    before = rows(db, "old-done")
    for args in (
        ["--older-than", "30d"],
        ["--status", "running"],
        ["--keep-last", "0"],
        ["--keep-last", "0", "--checkpoints"],
    ):
        report = as_json(cli("threads", "prune", *args, "--json"))
        assert "old-done" not in report["threads"], args
        assert rows(db, "old-done") == before
    # And it is running: a resume refuses it.
    refused = cli("resume", "old-done")
    assert refused.exit_code == ExitCode.THREAD
    assert f"being run by process {owner}" in refused.stderr


# --- storage growth ----------------------------------------------------------------------------


async def stored_bytes(db: str, rounds: int) -> int:
    """Bytes a review run of ``rounds`` reviews (never approved) stores: checkpoints + writes."""
    no = json.dumps({"approved": False, "feedback": "more detail please"})
    script = {
        "researcher": ["facts"],
        "outliner": ["outline"],
        "writer": ["draft " * 50],
        "reviewer": [no] * rounds,
        "reviser": ["revised " * 50] * (rounds - 1),
    }
    with ScriptedChatModel(script) as model:
        outcome = await run(
            "review",
            "t",
            db=db,
            thread_id=f"r{rounds}",
            settings=RunSettings(options={"max_iterations": rounds}),
            context=PlaitContext(model=model),
        )
    assert outcome.stop_reason == f"max_iterations ({rounds}) reached without approval"
    ((checkpoints,),) = query(
        db,
        "SELECT sum(length(checkpoint) + length(metadata)) FROM checkpoints WHERE thread_id = ?",
        f"r{rounds}",
    )
    ((writes,),) = query(
        db, "SELECT sum(length(value)) FROM writes WHERE thread_id = ?", f"r{rounds}"
    )
    return checkpoints + writes


async def test_a_long_loop_grows_the_database_linearly_not_quadratically(tmp_path):
    # Each extra round must cost the same bytes however many came before: doubling the rounds
    # from 120 to 240 adds twice what going from 60 to 120 added (quadratic growth: 4 times).
    db = str(tmp_path / "growth.db")
    sizes = {n: await stored_bytes(db, n) for n in (60, 120, 240)}
    first, second = sizes[120] - sizes[60], sizes[240] - sizes[120]
    assert second <= 2.2 * first, sizes
    ((last_small,),) = query(db, LAST_CHECKPOINT, "r60")
    ((last_large,),) = query(db, LAST_CHECKPOINT, "r240")
    assert last_large <= 1.05 * last_small, (last_small, last_large)


LAST_CHECKPOINT = (
    "SELECT length(checkpoint) FROM checkpoints WHERE thread_id = ? "
    "ORDER BY checkpoint_id DESC LIMIT 1"
)
