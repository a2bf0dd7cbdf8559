"""Storage grows linearly with steps: no key of the shared state grows without bound."""

from __future__ import annotations

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
