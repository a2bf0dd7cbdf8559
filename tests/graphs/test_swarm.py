"""The swarm graph: handoffs with summaries, help within capacity, the handoff limit, the
ping-pong cut-off, unknown peers, failure and resume."""

from __future__ import annotations

import json

import pytest

from plait import runner
from plait.errors import GraphSetupError
from plait.graphs.swarm import create_swarm_graph
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings
from plait.testing import ScriptedChatModel

TASK = "Write a short guide to HTTP caching"


def answer(text: str) -> str:
    return json.dumps({"action": "answer", "answer": text})


def handoff(peer: str, summary: str) -> str:
    return json.dumps({"action": "handoff", "to": peer, "summary": summary})


def ask_help(*parts: tuple[str, str]) -> str:
    return json.dumps({"action": "ask_help", "help": [{"peer": p, "part": t} for p, t in parts]})


def human(messages) -> str:
    return messages[-1].content


async def run(model, db, **options):
    return await runner.run(
        "swarm",
        TASK,
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


async def test_a_handoff_carries_only_the_summary_and_is_logged(db):
    with ScriptedChatModel(
        {
            "triage": [handoff("researcher", "needs facts on Cache-Control")],
            "researcher": [answer("Cache-Control: max-age ...")],
        }
    ) as model:
        done = await run(model, db)
    state = done.values
    assert done.result == "Cache-Control: max-age ..."
    assert (state["answered_by"], done.stop_reason) == (
        "researcher",
        "researcher answered after 1 handoff(s)",
    )
    prompt = human(model.calls["researcher"][0])
    assert TASK in prompt and "from triage: needs facts on Cache-Control" in prompt
    assert "You are the triage" not in prompt
    handoffs = [
        (e["sender"], e["receiver"], e["content"]) for e in state["log"] if e["kind"] == "handoff"
    ]
    assert handoffs == [("triage", "researcher", "needs facts on Cache-Control")]


async def test_after_max_handoffs_the_active_agent_must_answer(db):
    with ScriptedChatModel(
        {
            "triage": [handoff("writer", "write it up")],
            # handoff is no longer offered, so an attempt is re-asked
            "writer": [handoff("researcher", "more facts"), answer("the guide")],
        }
    ) as model:
        done = await run(model, db, max_handoffs=1)
    assert done.result == "the guide"
    assert done.stop_reason == "max_handoffs (1) reached; writer answered"
    first_writer_call = human(model.calls["writer"][0])
    assert '"enum":["answer","ask_help"]' in first_writer_call
    assert "You may not hand off: max_handoffs (1) reached" in first_writer_call


async def test_ping_pong_between_two_agents_is_cut_off(db):
    with ScriptedChatModel(
        {
            "triage": [
                handoff("researcher", "s1"),
                handoff("researcher", "s3"),
                answer("triage's answer"),
            ],
            "researcher": [handoff("triage", "s2")],
        }
    ) as model:
        done = await run(model, db)
    state = done.values
    assert done.result == "triage's answer"
    assert done.stop_reason == "ping-pong between researcher and triage cut off; triage answered"
    assert [h["receiver"] for h in state["handoffs"]] == ["researcher", "triage"]
    assert [e["kind"] for e in state["log"]] == ["handoff", "handoff", "handoff_refused", "result"]
    assert "You may not hand off: ping-pong" in human(model.calls["triage"][2])


async def test_a_handoff_to_an_unknown_peer_is_re_asked_with_the_valid_peers(db):
    with ScriptedChatModel(
        {
            "triage": [handoff("editor", "polish it"), handoff("writer", "polish it")],
            "writer": [answer("polished")],
        }
    ) as model:
        done = await run(model, db)
    re_ask = human(model.calls["triage"][1])
    assert "not valid" in re_ask and "'researcher'" in re_ask and "'writer'" in re_ask
    assert done.values["answered_by"] == "writer"


async def test_help_requests_beyond_capacity_are_declined_and_each_helper_sees_its_part(db):
    with ScriptedChatModel(
        {
            "triage": [
                ask_help(("researcher", "PART-A"), ("researcher", "PART-B"), ("writer", "PART-C")),
                answer("combined"),
            ],
            "researcher": ["notes on A"],
            "writer": ["draft of C"],
        }
    ) as model:
        done = await run(model, db)
    state = done.values
    assert done.result == "combined"
    researcher_prompt, writer_prompt = (
        human(model.calls["researcher"][0]),
        human(model.calls["writer"][0]),
    )
    assert "PART-A" in researcher_prompt and "PART-C" not in researcher_prompt
    assert "PART-C" in writer_prompt and "PART-A" not in writer_prompt
    assert {
        rid: (h["peer"], h["reply"], bool(h["declined"])) for rid, h in state["help"].items()
    } == {
        "t1-1": ("researcher", "notes on A", False),
        "t1-2": ("researcher", "", True),
        "t1-3": ("writer", "draft of C", False),
    }
    second = human(model.calls["triage"][1])
    assert "notes on A" in second and "draft of C" in second and "at capacity" in second
    assert '"enum":["answer","handoff"]' in second  # help is used up for this turn


async def test_capacity_lets_a_peer_take_more_requests(db):
    with ScriptedChatModel(
        {
            "triage": [ask_help(("researcher", "A"), ("researcher", "B")), answer("done")],
            "researcher": ["a", "b"],
        }
    ) as model:
        done = await run(model, db, capacity=2)
    assert all(not h["declined"] for h in done.values["help"].values())


async def test_a_failed_helper_resumes_without_re_asking_the_others(db):
    first = ScriptedChatModel(
        {
            "triage": [ask_help(("researcher", "A"), ("writer", "C"))],
            "researcher": ["notes on A"],
            "writer": [RuntimeError("writer endpoint down")],
        }
    )
    with pytest.raises(RunFailed) as failed:
        await run(first, db)
    first.verify()
    with ScriptedChatModel({"writer": ["draft of C"], "triage": [answer("combined")]}) as second:
        done = await runner.resume(
            failed.value.thread_id, db=db, context=PlaitContext(model=second)
        )
    assert done.result == "combined"
    prompt = human(second.calls["triage"][0])
    assert "notes on A" in prompt and "draft of C" in prompt


async def test_start_names_the_agent_that_gets_the_task(db):
    with ScriptedChatModel({"writer": [answer("straight away")]}) as model:
        done = await run(model, db, start="writer")
    assert done.values["answered_by"] == "writer"


def test_factory_rejects_bad_arguments():
    with pytest.raises(GraphSetupError, match="start 'boss' is not an agent; choose one of"):
        create_swarm_graph(start="boss")
    with pytest.raises(GraphSetupError, match="invalid agent name 'help'"):
        create_swarm_graph(agents=["triage", "help"])
    with pytest.raises(GraphSetupError, match="capacity must be at least 1"):
        create_swarm_graph(capacity=0)


@pytest.mark.parametrize("pair", ["start=boss", "max_handoffs=-1", "capacity=0", "agents=a,a"])
def test_bad_set_value_is_a_usage_error(cli, pair):
    done = cli("run", "swarm", TASK, "--model", "demo", "--set", pair)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
