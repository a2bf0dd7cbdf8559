"""An empty reply from a text agent is a failed call: asked again, then a clear error."""

import types

import pytest

from plait.errors import ModelCallError
from plait.models import PlaitContext
from plait.models.resilience import CallPolicy
from plait.nodes import ask
from plait.testing import ScriptedChatModel

FAST = CallPolicy(attempts=3, backoff=0.001, timeout=5.0)


def runtime(model):
    return types.SimpleNamespace(context=PlaitContext(model=model, policy=FAST))


async def test_an_empty_reply_is_asked_again_and_its_tokens_are_counted():
    with ScriptedChatModel({"writer": ["", "  \n", "the draft"]}) as model:
        reply = await ask(runtime(model), "writer", "You are the writer.", "t")
    assert reply.value == "the draft"
    assert reply.usage["writer"]["calls"] == 3  # the empty answers were paid for too


async def test_only_empty_replies_fail_the_call_with_a_clear_error():
    with (
        ScriptedChatModel({"writer": ["", "", " "]}) as model,
        pytest.raises(ModelCallError) as raised,
    ):
        await ask(runtime(model), "writer", "You are the writer.", "t")
    assert str(raised.value) == (
        "model call for 'writer' failed: the model returned an empty reply, still after retries"
    )


def test_an_empty_reply_fails_a_cli_run_with_exit_1(cli, monkeypatch):
    from plait.testing import LoopbackServer

    with LoopbackServer({"researcher": ["", "", ""]}) as server:
        done = cli("run", "review", "t", "--model", "openai:m", "--base-url", server.base_url)
    assert done.exit_code == 1
    assert "empty reply" in done.stderr
    assert "resume" in done.stderr
