"""Time travel: `plait threads history ID` lists the checkpoints, `plait threads fork ID
--checkpoint CK [--set key=value]` starts a new thread from one of them, and the original is
left exactly as it was. What a fork re-runs is counted with scripted models."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from datetime import datetime

import pytest

from plait import PlaitContext, resume, run
from plait.errors import ExitCode
from plait.testing import ScriptedChatModel

NO = json.dumps({"approved": False, "feedback": "add an example"})
YES = json.dumps({"approved": True, "feedback": ""})
EDITED = "[demo] Revised by hand: CAP means you pick two of three."


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def history(cli, thread_id: str) -> list[dict]:
    return as_json(cli("threads", "history", thread_id, "--json"))


def first_before(rows: list[dict], node: str) -> str:
    """The oldest checkpoint whose next node is ``node``."""
    return [r["checkpoint"] for r in rows if r["next"] == [node]][-1]


def rows_of(db: str, thread_id: str) -> dict[str, list[tuple]]:
    with closing(sqlite3.connect(db)) as conn:
        return {
            table: conn.execute(
                f"SELECT * FROM {table} WHERE thread_id = ? ORDER BY 1, 2, 3, 4", (thread_id,)
            ).fetchall()
            for table in ("checkpoints", "writes")
        }


def thread_ids(cli) -> list[str]:
    return sorted(t["thread_id"] for t in as_json(cli("threads", "--json")))


@pytest.fixture
def original(cli) -> dict:
    """A finished demo review run: the demo reviewer approves the first revision."""
    return as_json(
        cli("run", "review", "explain CAP", "--thread", "orig", "--json", "--model", "demo")
    )


def test_history_lists_every_checkpoint_newest_first_with_step_and_next(cli, original):
    rows = history(cli, "orig")
    assert [(r["step"], r["next"]) for r in rows] == [
        (7, []),
        (6, ["finalize"]),
        (5, ["review"]),
        (4, ["revise"]),
        (3, ["review"]),
        (2, ["write"]),
        (1, ["outline"]),
        (0, ["research"]),
        (-1, []),
    ]
    times = [datetime.fromisoformat(r["time"]) for r in rows]
    assert times == sorted(times, reverse=True)
    assert len({r["checkpoint"] for r in rows}) == len(rows)

    table = ok(cli("threads", "history", "orig")).splitlines()
    assert table[0].split()[:4] == ["step", "source", "wrote", "next"]
    assert [line.split()[0] for line in table[1:]] == [str(r["step"]) for r in rows]
    assert [line.split()[-1] for line in table[1:]] == [r["checkpoint"] for r in rows]


def test_fork_with_an_edited_draft_runs_on_from_there_and_leaves_the_original_intact(
    cli, db, original
):
    shown_before = as_json(cli("threads", "show", "orig", "--json"))
    history_before = history(cli, "orig")
    rows_before = rows_of(db, "orig")
    checkpoint = first_before(history_before, "review")

    forked = as_json(
        cli(
            "threads",
            "fork",
            "orig",
            "--checkpoint",
            checkpoint,
            "--set",
            f"draft={EDITED}",
            "--thread",
            "edited",
            "--json",
        )
    )
    assert forked == {"thread_id": "edited", "forked_from": "orig", "checkpoint": checkpoint}

    shown = as_json(cli("threads", "show", "edited", "--json"))
    assert shown["status"] == "forked" and shown["result"] is None
    assert shown["graph"] == "review" and shown["task"] == "explain CAP"
    assert sorted(shown["usage"]) == ["outliner", "researcher", "writer"]
    copied = history(cli, "edited")
    # The original's history up to the checkpoint, plus one for the edit on top.
    assert copied[1:] == [r for r in history_before if r["step"] <= 3]
    assert copied[0]["step"] == 4 and copied[0]["source"] == "update"

    done = as_json(cli("resume", "edited", "--json"))
    assert done["status"] == "done"
    assert done["result"] == EDITED  # the demo reviewer approves a "[demo] Revised" draft at once
    assert done["stop_reason"] == "approved by the reviewer after 1 review(s)"
    assert done["usage"]["reviewer"]["calls"] == 1 and "reviser" not in done["usage"]

    assert as_json(cli("threads", "show", "orig", "--json")) == shown_before
    assert history(cli, "orig") == history_before
    assert rows_of(db, "orig") == rows_before
    assert original["result"] != EDITED


def test_fork_without_edits_reruns_exactly_what_followed_the_checkpoint(cli, db):
    script = {
        "researcher": ["facts"],
        "outliner": ["outline"],
        "writer": ["draft one"],
        "reviewer": [NO, YES],
        "reviser": ["draft two"],
    }
    with ScriptedChatModel(script) as first:
        asyncio.run(
            run("review", "explain CAP", db=db, thread_id="orig", context=PlaitContext(model=first))
        )
    rows = history(cli, "orig")

    # From before the first review: review, revise, review again; nothing before that.
    ok(
        cli(
            "threads",
            "fork",
            "orig",
            "--checkpoint",
            first_before(rows, "review"),
            "--thread",
            "again",
        )
    )
    with ScriptedChatModel({"reviewer": [NO, YES], "reviser": ["draft two"]}) as second:
        outcome = asyncio.run(resume("again", db=db, context=PlaitContext(model=second)))
    assert outcome.status == "done" and outcome.result == "draft two"
    assert [c[-1].content for c in second.calls["reviewer"]] == [
        c[-1].content for c in first.calls["reviewer"]
    ]
    assert outcome.stop_reason == "approved by the reviewer after 2 review(s)"

    # From before the second review: one review, then finalize.
    latest_review = [r["checkpoint"] for r in rows if r["next"] == ["review"]][0]
    ok(cli("threads", "fork", "orig", "--checkpoint", latest_review, "--thread", "late"))
    with ScriptedChatModel({"reviewer": [YES]}) as third:
        outcome = asyncio.run(resume("late", db=db, context=PlaitContext(model=third)))
    assert outcome.result == "draft two"
    assert outcome.usage["reviewer"]["calls"] == 2  # one before the fork, one after
    assert outcome.usage["reviser"]["calls"] == 1  # before the fork only


def test_a_fork_gets_a_new_id_when_none_is_given(cli, original):
    checkpoint = first_before(history(cli, "orig"), "review")
    forked = as_json(cli("threads", "fork", "orig", "--checkpoint", checkpoint, "--json"))
    new_id = forked["thread_id"]
    assert new_id != "orig" and thread_ids(cli) == sorted(["orig", new_id])
    text = ok(cli("threads", "fork", "orig", "-c", checkpoint))
    assert "continue with: plait resume " in text


def test_fork_refuses_bad_input_and_creates_nothing(cli, original):
    checkpoint = first_before(history(cli, "orig"), "review")
    cases = {
        ("nosuch", "--checkpoint", checkpoint): (ExitCode.THREAD, "no thread 'nosuch'"),
        ("orig", "--checkpoint", "nosuchcheckpoint"): (
            ExitCode.THREAD,
            "thread 'orig' has no checkpoint 'nosuchcheckpoint'",
        ),
        ("orig", "--checkpoint", checkpoint, "--set", "drfat=x"): (
            ExitCode.USAGE,
            "the state has no key 'drfat'; keys: ",
        ),
        ("orig", "--checkpoint", checkpoint, "--thread", "orig"): (
            ExitCode.THREAD,
            "thread 'orig' already exists",
        ),
    }
    for args, (code, message) in cases.items():
        refused = cli("threads", "fork", *args)
        assert refused.exit_code == code, (args, refused.stderr)
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith(f"error: {message}"), line
        assert "Traceback" not in refused.stderr
    keys = cli("threads", "fork", "orig", "--checkpoint", checkpoint, "--set", "drfat=x").stderr
    listed = keys.strip().split("keys: ")[1].split(", ")
    assert {"draft", "feedback", "iteration", "task", "result"} <= set(listed)
    assert thread_ids(cli) == ["orig"]


def test_a_fork_of_a_paused_thread_still_waits_for_the_person(cli):
    gate = cli(
        "run",
        "pipeline",
        "t",
        "--approve-before",
        "transform",
        "--thread",
        "gate",
        "--model",
        "demo",
    )
    assert gate.exit_code == ExitCode.WAITING
    paused_at = history(cli, "gate")[0]
    assert paused_at["next"] == ["transform"]
    ok(cli("threads", "fork", "gate", "--checkpoint", paused_at["checkpoint"], "--thread", "copy"))

    cli("resume", "copy")  # no decision given: the approval gate must hold
    shown = as_json(cli("threads", "show", "copy", "--json"))
    assert shown["status"] != "done"
    assert "transform" not in shown["usage"]
