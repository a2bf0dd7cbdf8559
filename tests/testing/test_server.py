from __future__ import annotations

import asyncio
import json
import types

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from plait.errors import ModelCallError
from plait.models import PlaitContext
from plait.models.resilience import CallPolicy
from plait.models.spec import load_chat_model
from plait.nodes import ask, ask_for
from plait.testing import (
    LoopbackServer,
    ScriptError,
    demo_responder,
    drop,
    malformed,
    status,
    text,
)

# plait retries (call_model), the client must not (max_retries=0), so the server sees exactly
# one request per plait attempt. A near-zero backoff keeps the retry tests fast.
FAST = CallPolicy(attempts=3, backoff=0.001, timeout=5.0)
ONCE = CallPolicy(attempts=1, timeout=5.0)


def client(server: LoopbackServer, **options) -> ChatOpenAI:
    """The real client as plait builds it for ``openai:m``, or with ``options`` changed."""
    if not options:
        return load_chat_model("openai:m", base_url=server.base_url)  # type: ignore[return-value]
    return ChatOpenAI(model="m", base_url=server.base_url, api_key="k", max_retries=0, **options)


async def ask_writer(model: ChatOpenAI, role: str = "writer", policy: CallPolicy = FAST) -> str:
    runtime = types.SimpleNamespace(context=PlaitContext(model=model, policy=policy))
    return (await ask(runtime, role, f"You are the {role}. Write.", "Task: a haiku")).value


def test_plait_builds_openai_clients_that_do_not_retry_themselves():
    with LoopbackServer({}) as server:
        model = client(server)
    assert model.max_retries == 0


async def test_text_reply_with_usage_and_echoed_model():
    with LoopbackServer({"writer": ["x" * 20]}) as server:
        message = await client(server).ainvoke(
            [SystemMessage("You are the writer."), HumanMessage("y" * 21)]
        )
    assert message.content == "x" * 20
    # prompt "You are the writer.\n" + 21 chars = 41 chars -> 11 tokens; 20 chars -> 5.
    assert message.usage_metadata["input_tokens"] == 11
    assert message.usage_metadata["output_tokens"] == 5
    assert message.usage_metadata["total_tokens"] == 16
    assert message.response_metadata["model_name"] == "m"
    assert server.requests[0].kind == "text"


async def test_429_with_retry_after_then_success_is_retried_once():
    with LoopbackServer({"writer": [status(429, headers={"Retry-After": "0"}), "ok"]}) as server:
        assert await ask_writer(client(server)) == "ok"
    assert server.count("writer") == 2
    assert [r.kind for r in server.requests] == ["status", "text"]


async def test_500_on_every_attempt_maps_to_model_call_error():
    with (
        LoopbackServer({"writer": [status(500)] * 3}) as server,
        pytest.raises(ModelCallError, match="HTTP 500") as failure,
    ):
        await ask_writer(client(server))
    assert server.count() == 3  # plait's 3 attempts, and no client retries on top
    assert "'writer'" in str(failure.value)
    assert "still after retries" in str(failure.value)
    assert isinstance(failure.value.__cause__, openai.InternalServerError)


async def test_401_is_not_retried_and_names_the_key():
    with (
        LoopbackServer({"writer": [status(401)]}) as server,
        pytest.raises(ModelCallError, match="rejected the API key \\(HTTP 401\\)"),
    ):
        await ask_writer(client(server))
    assert server.count() == 1


async def test_404_is_not_retried_and_names_the_model_problem():
    with (
        LoopbackServer({"writer": [status(404)]}) as server,
        pytest.raises(ModelCallError, match="does not know the model \\(HTTP 404\\)"),
    ):
        await ask_writer(client(server))
    assert server.count() == 1


async def test_error_bodies_are_openai_shaped_and_carry_their_headers():
    with (
        LoopbackServer({"writer": [status(429, headers={"Retry-After": "7"})]}) as server,
        pytest.raises(openai.RateLimitError) as failure,
    ):
        await client(server).ainvoke([SystemMessage("You are the writer.")])
    assert failure.value.body == {
        "message": "Too Many Requests",
        "type": "rate_limit_error",
        "code": None,
    }
    assert failure.value.response.headers["retry-after"] == "7"
    assert server.count() == 1


async def test_malformed_body_is_a_model_call_error_and_not_retried():
    with (
        LoopbackServer({"writer": [malformed()]}) as server,
        pytest.raises(ModelCallError, match="'writer'.*body that is not JSON") as failure,
    ):
        await ask_writer(client(server))
    # The openai client does not wrap a body it cannot parse, and plait does not count a
    # JSONDecodeError as transient.
    assert isinstance(failure.value.__cause__, json.JSONDecodeError)
    assert server.count() == 1


async def test_dropped_connection_is_retried_then_a_connection_error():
    with (
        LoopbackServer({"writer": [drop(), drop(), drop()]}) as server,
        pytest.raises(ModelCallError, match="cannot reach the model endpoint") as failure,
    ):
        await ask_writer(client(server))
    assert isinstance(failure.value.__cause__, openai.APIConnectionError)
    assert server.count() == 3


async def test_a_dropped_connection_then_an_answer_is_retried_once():
    with LoopbackServer({"writer": [drop(), "ok"]}) as server:
        assert await ask_writer(client(server)) == "ok"
    assert [r.kind for r in server.requests] == ["drop", "text"]


async def test_a_reply_slower_than_plaits_timeout_is_retried_then_a_timeout_error():
    policy = CallPolicy(attempts=2, backoff=0.001, timeout=0.1)
    with (
        LoopbackServer({"writer": [text("late", delay=0.3)] * 2}) as server,
        pytest.raises(ModelCallError, match="did not answer in time") as failure,
    ):
        await ask_writer(client(server), policy=policy)
    assert isinstance(failure.value.__cause__, TimeoutError)
    assert server.count() == 2


async def test_a_reply_slower_than_the_clients_own_timeout_is_a_timeout_error():
    with (
        LoopbackServer({"writer": [text("late", delay=0.3)]}) as server,
        pytest.raises(ModelCallError, match="did not answer in time") as failure,
    ):
        await ask_writer(client(server, timeout=0.1), policy=ONCE)
    assert isinstance(failure.value.__cause__, openai.APITimeoutError)
    assert server.count() == 1


async def test_role_comes_from_the_first_system_message():
    seen: list[str] = []

    def responder(role: str, body: dict) -> str:
        seen.append(role)
        return "ok"

    with LoopbackServer(responder) as server:
        model = client(server)
        await ask_writer(model, "qa-tester")
        await model.ainvoke([HumanMessage("no system prompt")])
        await model.ainvoke([SystemMessage("Be brief."), SystemMessage("You are the judge.")])
    assert seen == ["qa-tester", "unknown", "unknown"]
    assert [r.role for r in server.requests] == seen
    assert server.requests[0].body["messages"][1]["content"] == "Task: a haiku"


async def test_exhausted_script_answers_500_and_fails_verify():
    server = LoopbackServer({"writer": ["one"]}).start()
    try:
        model = client(server)
        assert await ask_writer(model, policy=ONCE) == "one"
        with pytest.raises(ModelCallError, match="HTTP 500"):
            await ask_writer(model, policy=ONCE)
        with pytest.raises(ModelCallError):
            await ask_writer(model, "critic", policy=ONCE)
    finally:
        server.stop()
    assert server.violations == [
        "script exhausted for role 'writer'",
        "script exhausted for role 'critic'",
    ]
    with pytest.raises(ScriptError, match="exhausted for role 'critic'"):
        server.verify()


async def test_verify_names_unconsumed_replies_and_exit_verifies():
    with (
        pytest.raises(ScriptError, match="role 'writer': 2 call"),
        LoopbackServer({"writer": ["a", "b"]}) as server,
    ):
        await ask_writer(client(server))
    # An exception already on its way out is not replaced by the verify error.
    with pytest.raises(KeyError), LoopbackServer({"writer": ["a"]}):
        raise KeyError("the real failure")


async def test_requests_off_the_chat_route_are_violations():
    with LoopbackServer({}) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(server.base_url + "/embeddings", json={})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_url"
        server.violations.clear()  # so leaving the block does not fail this test


async def test_concurrent_requests_are_all_answered():
    def responder(role: str, body: dict):
        return text(f"answer to {body['messages'][-1]['content']}", delay=0.2)

    with LoopbackServer(responder) as server:
        model = client(server)
        prompts = [f"q{i}" for i in range(16)]
        replies = await asyncio.gather(
            *(
                model.ainvoke([SystemMessage("You are the worker."), HumanMessage(p)])
                for p in prompts
            )
        )
    assert [r.content for r in replies] == [f"answer to {p}" for p in prompts]
    assert server.count("worker") == 16
    assert all(r.kind == "text" for r in server.requests)


class _Verdict(BaseModel):
    approved: bool
    reasons: list[str]


async def test_demo_responder_answers_text_and_structured_requests():
    with LoopbackServer(demo_responder) as server:
        model = client(server)
        assert (await ask_writer(model)).startswith("[demo] canned writer output")
        runtime = types.SimpleNamespace(context=PlaitContext(model=model))
        reply = await ask_for(runtime, "reviewer", "You are the reviewer.", "Task: t", _Verdict)
    assert isinstance(reply.value, _Verdict)
    assert reply.value.reasons
    assert server.requests[-1].channel == "json_schema"
