"""A run that fails part-way is finished by resume, which calls the model only for what had not
finished. Scripted models prove it: each is verified to be called exactly as scripted."""

from __future__ import annotations

import json

import pytest

from plait import PlaitContext, RunFailed, RunSettings, resume, run
from plait.checkpoints import open_database
from plait.errors import ThreadError
from plait.testing import ScriptedChatModel

PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "role": "researcher", "description": "find facts"},
            {"id": "s2", "role": "analyst", "description": "weigh options"},
            {"id": "s3", "role": "coder", "description": "sketch code"},
        ]
    }
)


def echo_results(messages) -> str:
    # The synthesizer's reply shows exactly which worker outputs it was given.
    prompt = messages[-1].content
    return "SYNTH " + " | ".join(line for line in prompt.splitlines() if line.startswith("out-"))


async def test_orchestrator_resume_reruns_only_the_failed_worker(db):
    first = ScriptedChatModel(
        {
            "planner": [PLAN],
            "researcher": ["out-research"],
            "analyst": [RuntimeError("endpoint fell over")],
            "coder": ["out-code"],
        }
    )
    with pytest.raises(RunFailed, match="endpoint fell over") as failed:
        await run("orchestrator", "build it", db=db, context=PlaitContext(model=first))
    first.verify()
    thread_id = failed.value.thread_id

    async with open_database(db) as database:
        assert (await database.threads.get(thread_id)).status == "failed"

    second = ScriptedChatModel({"analyst": ["out-analysis"], "synthesizer": [echo_results]})
    outcome = await resume(thread_id, db=db, context=PlaitContext(model=second))
    second.verify()
    assert outcome.status == "done"
    assert outcome.result == "SYNTH out-research | out-analysis | out-code"
    assert outcome.usage["researcher"]["calls"] == 1
    assert outcome.usage["analyst"]["calls"] == 1  # the failed call's writes never landed


async def test_review_resume_continues_inside_the_loop(db):
    first = ScriptedChatModel(
        {
            "researcher": ["facts"],
            "outliner": ["outline"],
            "writer": ["draft one"],
            "reviewer": [json.dumps({"approved": False, "feedback": "add an example"})],
            "reviser": [RuntimeError("reviser crashed")],
        }
    )
    with pytest.raises(RunFailed) as failed:
        await run("review", "explain CAP", db=db, context=PlaitContext(model=first))
    first.verify()

    second = ScriptedChatModel(
        {
            "reviser": ["draft two"],
            "reviewer": [json.dumps({"approved": True, "feedback": ""})],
        }
    )
    outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=second))
    second.verify()
    assert outcome.result == "draft two"
    assert outcome.stop_reason == "approved by the reviewer after 2 review(s)"
    assert "add an example" in second.calls["reviser"][0][-1].content


async def test_resume_keeps_the_settings_the_thread_started_with(db):
    outcome = await run(
        "review", "t", db=db, settings=RunSettings(model="demo", options={"max_iterations": 1})
    )
    # One review that the demo does not approve, then max_iterations stops the loop.
    assert outcome.stop_reason == "max_iterations (1) reached without approval"
    async with open_database(db) as database:
        record = await database.threads.get(outcome.thread_id)
    assert record.settings["options"] == {"max_iterations": 1}
    assert record.settings["model"] == "demo"


async def test_a_finished_thread_cannot_be_resumed(db):
    outcome = await run("pipeline", "t", db=db)
    with pytest.raises(ThreadError, match="already finished"):
        await resume(outcome.thread_id, db=db)


async def test_an_unknown_thread_cannot_be_resumed(db):
    with pytest.raises(ThreadError, match="no thread 'nope'"):
        await resume("nope", db=db)


async def test_a_thread_id_cannot_be_reused(db):
    await run("pipeline", "t", db=db, thread_id="mine")
    with pytest.raises(ThreadError, match="already exists"):
        await run("pipeline", "t", db=db, thread_id="mine")
