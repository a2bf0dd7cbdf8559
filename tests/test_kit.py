"""The node kit books a node's usage and envelopes itself."""

import types

import pytest
from langgraph.types import Command

from plait.errors import ModelCallError
from plait.models import PlaitContext
from plait.models.resilience import CallPolicy
from plait.nodes import ask, node, record_failure, say
from plait.testing import ScriptedChatModel

FAST = CallPolicy(attempts=1, backoff=0.001, timeout=5.0)


def runtime(model):
    return types.SimpleNamespace(context=PlaitContext(model=model, policy=FAST))


async def test_a_node_returns_only_what_it_produced_and_gets_usage_and_log():
    @node
    async def writer(state, rt):
        first = await ask(rt, "writer", "You are the writer.", "one")
        second = await ask(rt, "writer", "You are the writer.", "two")
        say("writer", "user", "result", second.value)
        return {"result": first.value + second.value}

    with ScriptedChatModel({"writer": ["a", "b"]}) as model:
        update = await writer({"task": "t"}, runtime(model))
    assert update["result"] == "ab"
    assert update["usage"]["writer"]["calls"] == 2  # both calls, nobody returned them
    ((entry),) = update["log"]
    assert (entry["sender"], entry["receiver"], entry["content"]) == ("writer", "user", "b")


async def test_a_branch_files_usage_under_its_key_and_a_recorded_failure_keeps_its_spend():
    @node(
        branch=lambda p: p["id"],
        on_error=record_failure("reducer", sender=lambda p: p["role"]),
    )
    async def mapper(payload, rt):
        await ask(rt, "mapper", "You are the mapper.", "first")
        await ask(rt, "mapper", "You are the mapper.", "second")  # fails
        return {"outputs": {payload["id"]: "never"}}

    with ScriptedChatModel({"mapper": ["ok", RuntimeError("down")]}) as model:
        update = await mapper({"id": "item-3", "role": "mapper"}, runtime(model))
    assert update["errors"] == {"item-3": "model call for 'mapper' failed: RuntimeError: down"}
    assert update["usage"]["mapper"]["calls"] == 1  # the call that was paid for is kept
    assert update["usage"]["mapper"]["branches"]["item-3"]["calls"] == 1
    (entry,) = update["log"]
    assert (entry["sender"], entry["receiver"], entry["kind"]) == ("mapper", "reducer", "failure")
    assert entry["correlation_id"] == "item-3"


async def test_without_on_error_a_branch_failure_stops_the_run():
    @node(branch=lambda p: p["id"])
    async def mapper(payload, rt):
        await ask(rt, "mapper", "You are the mapper.", "x")
        return {}

    with (
        ScriptedChatModel({"mapper": [RuntimeError("down")]}) as model,
        pytest.raises(ModelCallError),
    ):
        await mapper({"id": "i"}, runtime(model))


async def test_a_command_gets_the_bookkeeping_in_its_update():
    @node
    async def router(state, rt):
        reply = await ask(rt, "router", "You are the router.", "where?")
        return Command(goto=reply.value, update={"route": reply.value})

    with ScriptedChatModel({"router": ["code"]}) as model:
        command = await router({"task": "t"}, runtime(model))
    assert command.goto == "code"
    assert command.update["route"] == "code" and command.update["usage"]["router"]["calls"] == 1


def test_say_outside_a_node_is_an_error_not_a_lost_envelope():
    with pytest.raises(RuntimeError, match="inside one"):
        say("a", "b", "note", "lost")
