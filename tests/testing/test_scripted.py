from __future__ import annotations

import asyncio
import time
import types

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from plait.errors import ModelCallError
from plait.models import PlaitContext
from plait.models.resilience import CallPolicy
from plait.nodes import agent_node, ask
from plait.state import CommonState
from plait.testing import ScriptedChatModel, ScriptError

# plait retries transient faults (ConnectionError among them) around the scripted model too;
# a near-zero backoff keeps those retries fast.
FAST = CallPolicy(attempts=3, backoff=0.001, timeout=5.0)


def runtime(model: ScriptedChatModel) -> types.SimpleNamespace:
    return types.SimpleNamespace(context=PlaitContext(model=model, policy=FAST))


async def say(model: ScriptedChatModel, role: str, prompt: str = "go") -> str:
    return (await ask(runtime(model), role, f"You are the {role}.", prompt)).value


async def test_each_role_answers_from_its_own_entries_in_order():
    with ScriptedChatModel({"writer": ["w1", "w2"], "critic": ["c1"]}) as model:
        assert await say(model, "writer") == "w1"
        assert await say(model, "critic") == "c1"
        assert await say(model, "writer") == "w2"
    assert model.count("writer") == 2
    assert model.count("critic") == 1


async def test_sync_invoke_reads_the_role_from_metadata():
    model = ScriptedChatModel({"writer": ["sync reply"]})
    reply = model.invoke([HumanMessage("hi")], config={"metadata": {"plait_role": "writer"}})
    assert reply.content == "sync reply"
    model.verify()


async def test_latency_is_awaited_never_slept_blocking(monkeypatch):
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def spy(seconds: float, *args):
        waits.append(seconds)
        await real_sleep(0)

    def blocking(seconds: float):
        raise AssertionError("a blocking sleep would stall every other branch")

    monkeypatch.setattr(asyncio, "sleep", spy)
    monkeypatch.setattr(time, "sleep", blocking)
    with ScriptedChatModel({"writer": ["late"]}, latency=0.25) as model:
        assert await say(model, "writer") == "late"
    assert 0.25 in waits


async def test_exception_entries_are_raised_and_callable_entries_see_the_messages():
    model = ScriptedChatModel(
        {"writer": [ValueError("boom"), lambda messages: f"saw {messages[-1].content}"]}
    )
    # Not a transient fault: one call, no retry, the entry's error named.
    with pytest.raises(ModelCallError, match="ValueError: boom"):
        await say(model, "writer")
    assert model.count("writer") == 1
    assert await say(model, "writer", "the task") == "saw the task"
    model.verify()


async def test_a_transient_exception_entry_is_retried_with_the_next_entry():
    model = ScriptedChatModel({"writer": [ConnectionError("reset"), "after the reset"]})
    assert await say(model, "writer") == "after the reset"
    assert model.count("writer") == 2
    model.verify()


async def test_transient_exception_entries_on_every_attempt_fail_with_the_last():
    model = ScriptedChatModel({"writer": [ConnectionError(f"reset {i}") for i in range(3)]})
    with pytest.raises(
        ModelCallError, match="cannot reach the model endpoint ScriptedChatModel: reset 2"
    ) as failure:
        await say(model, "writer")
    assert isinstance(failure.value.__cause__, ConnectionError)
    assert model.count("writer") == FAST.attempts
    model.verify()


async def test_calling_a_role_beyond_its_entries_raises_and_is_recorded():
    model = ScriptedChatModel({"writer": ["only one"]})
    await say(model, "writer")
    with pytest.raises(ScriptError, match="more than its 1"):
        model.invoke([HumanMessage("again")], config={"metadata": {"plait_role": "writer"}})
    assert model.violations == ["role 'writer' called more than its 1 entries"]
    with pytest.raises(ScriptError, match="unexpected call"):
        model.verify()


async def test_an_unscripted_role_is_a_violation_even_when_plait_wraps_the_error():
    model = ScriptedChatModel({"writer": ["w"]})
    await say(model, "writer")
    with pytest.raises(ModelCallError, match="ScriptError"):
        await say(model, "stranger")
    assert model.violations == ["role 'stranger' is not in the script"]
    with pytest.raises(ScriptError, match="stranger"):
        model.verify()


async def test_verify_fails_when_entries_are_left_naming_role_and_counts():
    model = ScriptedChatModel({"writer": ["w1", "w2"], "critic": ["c1"]})
    await say(model, "writer")
    with pytest.raises(ScriptError) as failure:
        model.verify()
    message = str(failure.value)
    assert "role 'writer': 2 call(s) scripted, 1 made" in message
    assert "role 'critic': 1 call(s) scripted, 0 made" in message


async def test_context_manager_verifies_on_clean_exit_only():
    with pytest.raises(ScriptError, match="writer"), ScriptedChatModel({"writer": ["w"]}):
        pass
    # An exception already on its way out is not replaced by the verify error.
    with pytest.raises(KeyError), ScriptedChatModel({"writer": ["w"]}):
        raise KeyError("the real failure")


async def test_calls_record_the_messages_each_role_was_sent():
    model = ScriptedChatModel({"critic": ["fine"]})
    await say(model, "critic", "Task: check the draft")
    [messages] = model.calls["critic"]
    assert messages == [SystemMessage("You are the critic."), HumanMessage("Task: check the draft")]


async def test_replies_carry_usage_and_model_name():
    model = ScriptedChatModel({"writer": ["12345678"]})
    message = await model.ainvoke(
        [HumanMessage("x" * 40)], config={"metadata": {"plait_role": "writer"}}
    )
    assert message.usage_metadata == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
    assert message.response_metadata["model_name"] == "scripted"
    reply = await ask(runtime(ScriptedChatModel({"writer": ["ok"]})), "writer", "", "p")
    assert reply.usage["writer"]["models"] == {"scripted": 1}
    assert reply.usage["writer"]["output_tokens"] == 1


async def test_concurrent_calls_consume_each_entry_exactly_once():
    entries = [f"reply {i}" for i in range(20)]
    model = ScriptedChatModel({"worker": entries}, latency=0.01)
    replies = await asyncio.gather(*(say(model, "worker") for _ in range(20)))
    assert sorted(replies) == sorted(entries)
    model.verify()


class _FanState(CommonState, total=False):
    pros: str
    cons: str
    verdict: str


async def test_a_fan_out_graph_sends_each_agent_only_its_own_context():
    builder = StateGraph(_FanState)
    builder.add_node("pros", agent_node("pros", "You are the pros."))
    builder.add_node("cons", agent_node("cons", "You are the cons."))
    builder.add_node(
        "judge", agent_node("judge", "You are the judge.", reads=["pros", "cons"], writes="verdict")
    )
    builder.add_edge(START, "pros")
    builder.add_edge(START, "cons")
    builder.add_edge(["pros", "cons"], "judge")
    builder.add_edge("judge", END)
    graph = builder.compile()
    script = {"pros": ["cheap"], "cons": ["slow"], "judge": ["buy it"]}
    with ScriptedChatModel(script, latency=0.01) as model:
        out = await graph.ainvoke({"task": "buy?"}, context=PlaitContext(model=model))
    assert out["verdict"] == "buy it"
    [judge_messages] = model.calls["judge"]
    assert "cheap" in judge_messages[-1].content and "slow" in judge_messages[-1].content
    [pros_messages] = model.calls["pros"]
    assert "slow" not in pros_messages[-1].content
