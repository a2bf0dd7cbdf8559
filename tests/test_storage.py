"""Storage grows linearly with steps: no key of the shared state grows without bound."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from plait import PlaitContext, RunSettings, run
from plait.state.log import LOG_WINDOW, append_log, envelope
from plait.testing import ScriptedChatModel

NO = json.dumps({"approved": False, "feedback": "again"})


def test_the_log_keeps_the_latest_window_and_drops_replays():
    first = [envelope("a", "b", "note", str(i)) for i in range(LOG_WINDOW)]
    merged = append_log(first, [first[-1], envelope("a", "b", "note", "new")])
    assert len(merged) == LOG_WINDOW
    assert merged[-1]["content"] == "new" and merged[0] is first[1]


async def largest_checkpoint(db: str, rounds: int) -> int:
    script = {
        "researcher": ["facts"],
        "outliner": ["outline"],
        "writer": ["draft"],
        "reviewer": [NO] * rounds,
        "reviser": ["draft again"] * (rounds - 1),
    }
    with ScriptedChatModel(script) as model:
        await run(
            "review",
            "t",
            db=db,
            context=PlaitContext(model=model),
            settings=RunSettings(options={"max_iterations": rounds}),
        )
    with sqlite3.connect(db) as conn:
        (size,) = conn.execute("SELECT max(length(checkpoint)) FROM checkpoints").fetchone()
    return size


async def test_a_checkpoint_does_not_grow_with_the_number_of_rounds(tmp_path):
    # Past the log window, a 150-round loop's checkpoints are no bigger than an 80-round one's:
    # total storage is then linear in the number of steps.
    medium = await largest_checkpoint(str(tmp_path / "medium.db"), 80)
    long = await largest_checkpoint(str(tmp_path / "long.db"), 150)
    assert long <= medium * 1.05


def test_threads_log_reads_back_every_message_the_window_dropped(db, cli):
    rounds = 12
    script = {
        "researcher": ["facts"],
        "outliner": ["outline"],
        "writer": ["draft"],
        "reviewer": [NO] * rounds,
        "reviser": ["draft again"] * (rounds - 1),
    }
    with ScriptedChatModel(script) as model:
        outcome = asyncio.run(
            run(
                "review",
                "t",
                db=db,
                context=PlaitContext(model=model),
                thread_id="long",
                settings=RunSettings(options={"max_iterations": rounds}),
            )
        )
    assert len(outcome.values["log"]) == LOG_WINDOW
    shown = cli("threads", "log", "long", "--json")
    assert shown.exit_code == 0, shown.stderr
    envelopes = json.loads(shown.stdout)
    kinds = [e["kind"] for e in envelopes]
    # research, outline, the first draft, then a review and a revised draft per round but the last.
    assert kinds[:3] == ["research", "outline", "draft"]
    assert kinds.count("review") == rounds and kinds.count("draft") == rounds
    assert len({e["id"] for e in envelopes}) == len(envelopes) == 3 + 2 * rounds - 1
    assert envelopes[-LOG_WINDOW:] == outcome.values["log"]
