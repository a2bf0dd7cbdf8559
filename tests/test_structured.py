"""Structured output and agent nodes: JSON is recovered from text, validated, re-asked with the
exact problem, and given up on with an error that says who returned what; an agent node sends
the model only what it reads."""

from __future__ import annotations

from typing import Literal

import pytest
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from plait import PlaitContext, agent_node, ask, ask_for
from plait.errors import ModelCallError, StructuredOutputError
from plait.models import load_chat_model
from plait.nodes import extract_json, parse_reply
from plait.nodes.calls import _describe_failure
from plait.testing import LoopbackServer, ScriptedChatModel
from plait.testing.scripted import tokens


class Verdict(BaseModel):
    approved: bool
    score: int


class Step(BaseModel):
    id: str
    role: Literal["researcher", "coder"]


class Plan(BaseModel):
    steps: list[Step] = Field(min_length=1)


def runtime(model) -> Runtime:
    return Runtime(context=PlaitContext(model=model))


def prompt_tokens(messages) -> int:
    return tokens("\n".join(str(m.content) for m in messages))


@pytest.mark.parametrize(
    "reply",
    [
        '{"approved": true, "score": 3}',
        '```json\n{"approved": true, "score": 3}\n```',
        '```\n{"approved": true, "score": 3}\n```',
        'Sure, here it is:\n{"approved": true, "score": 3}\nHope that helps!',
        'Here:\n```json\n{"approved": true, "score": 3,}\n```\nDone.',
        '{"approved": true, "score": 3, }',
    ],
    ids=["plain", "json fence", "bare fence", "prose around", "fence and comma", "comma"],
)
def test_extract_json_recovers_the_object(reply):
    assert extract_json(reply) == {"approved": True, "score": 3}


def test_extract_json_repairs_trailing_commas_in_nested_arrays():
    assert extract_json('{"steps": [{"id": "a",}, {"id": "b"},],}') == {
        "steps": [{"id": "a"}, {"id": "b"}]
    }


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("I cannot answer that.", "the reply contains no JSON object"),
        ("} backwards {", "the reply contains no JSON object"),
        ('{"approved": true "score": 3}', "the reply is not valid JSON (Expecting ',' delimiter"),
    ],
)
def test_extract_json_without_an_object_raises_value_error(reply, problem):
    with pytest.raises(ValueError) as raised:
        extract_json(reply)
    assert str(raised.value).startswith(problem)


@pytest.mark.parametrize(
    "reply, problem",
    [
        ('{"approved": true}', "score: Field required"),
        ('{"approved": "perhaps", "score": 1}', "approved: Input should be a valid boolean"),
        ('{"steps": []}', "steps: List should have at least 1 item after validation, not 0"),
        (
            '{"steps": [{"id": "s1", "role": "coder"}, {"id": "s2", "role": "poet"}]}',
            "steps.1.role: Input should be 'researcher' or 'coder'",
        ),
    ],
)
def test_parse_reply_problems_name_the_field(reply, problem):
    schema = Plan if "steps" in reply else Verdict
    with pytest.raises(ValueError) as raised:
        parse_reply(reply, schema)
    assert str(raised.value).startswith(problem)


def test_parse_reply_lists_every_problem():
    with pytest.raises(ValueError) as raised:
        parse_reply('{"approved": "perhaps"}', Verdict)
    assert str(raised.value).split("; ")[1] == "score: Field required"


async def test_ask_for_reasks_with_the_exact_validation_problem():
    bad, good = '{"approved": true}', '{"approved": true, "score": 4}'
    with ScriptedChatModel({"judge": [bad, good]}) as model:
        reply = await ask_for(runtime(model), "judge", "You are the judge.", "Task: t", Verdict)
    assert reply.value == Verdict(approved=True, score=4)
    first, second = model.calls["judge"]
    assert "Reply with only a JSON object" in first[1].content
    assert '"score"' in first[1].content  # the schema itself is in the prompt
    assert second[:2] == first
    assert second[2].content == bad
    assert second[3].content == (
        "That reply was not valid: score: Field required. Reply again with only the JSON."
    )
    usage = reply.usage["judge"]
    assert usage["calls"] == 2
    assert usage["models"] == {"scripted": 2}
    assert usage["input_tokens"] == prompt_tokens(first) + prompt_tokens(second)
    assert usage["output_tokens"] == tokens(bad) + tokens(good)


async def test_ask_for_gives_up_after_three_attempts_naming_agent_reply_and_schema():
    replies = ["no idea", '{"approved": yes}', "{}"]
    with (
        ScriptedChatModel({"judge": replies}) as model,
        pytest.raises(StructuredOutputError) as raised,
    ):
        await ask_for(runtime(model), "judge", "You are the judge.", "t", Verdict, agent="judge_2")
    error = raised.value
    assert (error.agent, error.returned, error.expected) == ("judge_2", "{}", "Verdict")
    assert error.problem == "approved: Field required; score: Field required"
    assert "agent 'judge_2'" in str(error)
    assert "valid Verdict" in str(error)
    assert "returned '{}'" in str(error)
    assert len(model.calls["judge"]) == 3
    # Each re-ask carries the latest problem.
    assert "contains no JSON object" in model.calls["judge"][1][-1].content
    assert "not valid JSON" in model.calls["judge"][2][-1].content


async def test_ask_for_sends_the_schema_through_an_openai_endpoints_response_format():
    with LoopbackServer({"judge": ['{"approved": false, "score": 1}']}) as server:
        model = load_chat_model("openai:m", base_url=server.base_url)
        reply = await ask_for(runtime(model), "judge", "You are the judge.", "t", Verdict)
    assert reply.value.score == 1
    (request,) = server.requests
    sent = request.body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Verdict" and sent["json_schema"]["strict"] is True
    assert set(sent["json_schema"]["schema"]["properties"]) == {"approved", "score"}
    # The schema travels in its channel, not in the prompt.
    assert all("JSON schema" not in str(m["content"]) for m in request.body["messages"])


async def test_agent_node_sends_only_what_it_reads_and_writes_its_key():
    state = {"task": "T", "draft": "the draft", "notes": "n1", "secret": "S3CRET", "usage": {}}
    node = agent_node("critic", "You are the critic.", reads=["notes", "draft"], writes="critique")
    with ScriptedChatModel({"critic": ["too long"]}) as model:
        update = await node(state, runtime(model))
    (messages,) = model.calls["critic"]
    assert [m.content for m in messages] == [
        "You are the critic.",
        "Task: T\n\nNotes:\nn1\n\nDraft:\nthe draft",
    ]
    assert set(update) == {"critique", "usage", "log"}
    assert update["critique"] == "too long"
    usage = update["usage"]["critic"]
    assert (usage["calls"], usage["models"]) == (1, {"scripted": 1})
    assert usage["input_tokens"] == prompt_tokens(messages)
    assert usage["output_tokens"] == tokens("too long")
    (entry,) = update["log"]
    assert (entry["sender"], entry["receiver"], entry["kind"]) == ("critic", "graph", "output")
    assert entry["content"] == "too long" and entry["id"]


async def test_agent_node_defaults_and_role_override():
    node = agent_node("second_critic", "You are the critic.", role="critic")
    with ScriptedChatModel({"critic": ["fine"]}) as model:
        update = await node({"task": "T"}, runtime(model))
    assert model.calls["critic"][0][-1].content == "Task: T"
    assert update["second_critic"] == "fine"  # writes defaults to the agent's name
    assert list(update["usage"]) == ["second_critic"]


async def test_a_failing_model_call_becomes_a_model_call_error_naming_the_role():
    with (
        ScriptedChatModel({"writer": [RuntimeError("socket closed")]}) as model,
        pytest.raises(ModelCallError) as raised,
    ):
        await ask(runtime(model), "writer", "You are the writer.", "t")
    assert str(raised.value) == "model call for 'writer' failed: RuntimeError: socket closed"


class HTTPish(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@pytest.mark.parametrize(
    "exc, expected",
    [
        (HTTPish("bad field\nmore", 400), "the endpoint refused the request (HTTP 400): bad field"),
        (HTTPish("oops", 503), "the endpoint failed (HTTP 503), still after retries"),
        (HTTPish("who?", 401), "the endpoint rejected the API key (HTTP 401)"),
        (KeyError(), "KeyError: KeyError"),
    ],
)
def test_describe_failure(exc, expected):
    assert _describe_failure(exc, "planner", 0) == f"model call for 'planner' failed: {expected}"
