"""schema_responder: the loopback server enforcing the schema a request carries, as real ones do."""

from __future__ import annotations

import json
from typing import Literal

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field, ValidationError

from plait.nodes.structured import schema_instructions
from plait.testing import LoopbackServer, demo_responder, schema_responder

# langchain-openai warns on the 400s that OpenAI itself sends for these cases; expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This model does not support OpenAI's structured"),
    pytest.mark.filterwarnings("ignore:Invalid schema for OpenAI's structured"),
]

MESSAGES = [SystemMessage("You are the planner."), HumanMessage("Task: plan a trip")]


class Step(BaseModel):
    title: str = Field(min_length=60, max_length=70)
    hours: float = Field(gt=0, lt=1)


class Plan(BaseModel):
    kind: Literal["trip", "tour"]
    steps: list[Step] = Field(min_length=2, max_length=2)
    score: int = Field(ge=1, le=5)
    ratio: float = Field(ge=0, le=1)
    tags: list[str] = Field(min_length=4)
    note: str | None


class Loose(BaseModel):
    name: str
    note: str | None = None  # not in "required": strict mode rejects it as it is


def client(server: LoopbackServer) -> ChatOpenAI:
    return ChatOpenAI(model="m", base_url=server.base_url, api_key="k", max_retries=0)


def loose_schema(**changes) -> dict:
    return {**Loose.model_json_schema(), **changes}


async def test_json_schema_strict_gets_a_valid_instance():
    with LoopbackServer(schema_responder()) as server:
        model = client(server).with_structured_output(Plan, method="json_schema", strict=True)
        plan = await model.ainvoke(MESSAGES)
        again = await model.ainvoke(MESSAGES)
    # The openai SDK validated the content against Plan already; these check the bounds too.
    assert isinstance(plan, Plan)
    assert plan == again  # deterministic
    assert plan.kind in ("trip", "tour")
    assert len(plan.steps) == 2
    assert all(60 <= len(s.title) <= 70 and 0 < s.hours < 1 for s in plan.steps)
    assert 1 <= plan.score <= 5
    assert 0 <= plan.ratio <= 1
    assert len(plan.tags) >= 4
    assert [(r.kind, r.channel) for r in server.requests] == [("text", "json_schema")] * 2
    assert server.requests[0].body["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (loose_schema(), "'additionalProperties' is required to be supplied and to be false"),
        (
            loose_schema(additionalProperties=False),
            "'required' is required to be supplied and to be an array including every key in "
            "properties. Missing 'note'",
        ),
        (
            {"type": "array", "items": {"type": "string"}},
            "schema must be a JSON Schema of 'type: \"object\"'",
        ),
    ],
)
async def test_json_schema_strict_rejects_a_schema_openai_would_reject(schema, problem):
    # A pydantic class would be made strict-compatible by the openai SDK; a dict is sent as is.
    response_format = {"name": "Loose", "schema": schema, "strict": True}
    with (
        LoopbackServer(schema_responder()) as server,
        pytest.raises(openai.BadRequestError) as failure,
    ):
        await client(server).with_structured_output(response_format).ainvoke(MESSAGES)
    assert failure.value.status_code == 400
    assert failure.value.body["type"] == "invalid_request_error"
    assert failure.value.body["param"] == "response_format"
    assert failure.value.body["code"] is None
    assert problem in failure.value.body["message"]
    assert failure.value.body["message"].startswith("Invalid schema for response_format 'Loose'")
    assert [r.kind for r in server.requests] == ["refused"]


async def test_strict_check_reaches_nested_objects_in_defs():
    nested = {
        "type": "object",
        "properties": {"step": {"$ref": "#/$defs/Step"}},
        "required": ["step"],
        "additionalProperties": False,
        "$defs": {"Step": {"type": "object", "properties": {"title": {"type": "string"}}}},
    }
    response_format = {"name": "Nested", "schema": nested, "strict": True}
    with (
        LoopbackServer(schema_responder()) as server,
        pytest.raises(openai.BadRequestError, match=r"context=\('\$defs', 'Step'\)"),
    ):
        await client(server).with_structured_output(response_format).ainvoke(MESSAGES)
    assert server.requests[0].kind == "refused"


async def test_function_calling_gets_a_tool_call_with_a_valid_instance():
    with LoopbackServer(schema_responder()) as server:
        model = client(server).with_structured_output(
            Plan, method="function_calling", include_raw=True
        )
        reply = await model.ainvoke(MESSAGES)
    assert isinstance(reply["parsed"], Plan)
    assert reply["parsing_error"] is None
    raw = reply["raw"]
    [call] = raw.tool_calls
    assert call["name"] == "Plan"
    assert call["id"].startswith("call_")
    assert Plan.model_validate(call["args"]) == reply["parsed"]
    assert raw.response_metadata["finish_reason"] == "tool_calls"
    assert raw.usage_metadata["output_tokens"] > 0
    [request] = server.requests
    assert (request.kind, request.channel) == ("tool_call", "tools")
    assert request.body["tool_choice"] == {"type": "function", "function": {"name": "Plan"}}


async def test_tool_call_wire_format_is_openais():
    tool = {"type": "function", "function": {"name": "Loose", "parameters": loose_schema()}}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    with LoopbackServer(schema_responder()) as server:
        async with httpx.AsyncClient() as http:
            auto = (await http.post(server.base_url + "/chat/completions", json=body)).json()
            two = {**body, "tools": [tool, tool], "tool_choice": "auto"}
            chooses = (await http.post(server.base_url + "/chat/completions", json=two)).json()
    choice = auto["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "Loose"
    assert isinstance(call["function"]["arguments"], str)  # JSON text, as OpenAI sends
    Loose.model_validate_json(call["function"]["arguments"])
    assert set(auto["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    # With two tools and "auto" a real model may answer in text; this one always does.
    assert "tool_calls" not in chooses["choices"][0]["message"]


async def test_strict_function_with_a_loose_schema_is_refused():
    tool = {
        "type": "function",
        "function": {"name": "Loose", "parameters": loose_schema(), "strict": True},
    }
    with (
        LoopbackServer(schema_responder()) as server,
        pytest.raises(openai.BadRequestError) as failure,
    ):
        await (
            client(server).with_structured_output(tool, method="function_calling").ainvoke(MESSAGES)
        )
    assert failure.value.body["param"] == "tools[0].function.parameters"
    assert failure.value.body["message"].startswith("Invalid schema for function 'Loose'")
    assert [r.kind for r in server.requests] == ["refused"]


async def test_json_mode_gets_an_object_that_matches_no_schema():
    with LoopbackServer(schema_responder()) as server:
        reply = await client(server).with_structured_output(method="json_mode").ainvoke(MESSAGES)
    assert isinstance(reply, dict)
    assert reply["answer"].startswith("[demo] canned planner output")
    with pytest.raises(ValidationError):
        Plan.model_validate(reply)
    assert [(r.kind, r.channel) for r in server.requests] == [("text", "json_object")]


async def test_the_schema_in_the_prompt_is_ignored():
    # plait's prompt-only fallback: a real model may follow it, this server must not.
    prompt = "Task: plan a trip" + schema_instructions(Plan)
    messages = [SystemMessage("You are the planner."), HumanMessage(prompt)]
    with LoopbackServer(schema_responder()) as server:
        model = client(server)
        plain = await model.ainvoke(messages)
        json_mode = await model.bind(response_format={"type": "json_object"}).ainvoke(messages)
    assert plain.content.startswith("[demo] canned planner output")
    with pytest.raises(ValidationError):
        Plan.model_validate_json(json_mode.content)
    assert [r.channel for r in server.requests] == ["text", "json_object"]


async def test_refuse_json_schema_leaves_function_calling_working():
    with LoopbackServer(schema_responder(refuse_json_schema=True)) as server:
        model = client(server)
        with pytest.raises(openai.BadRequestError) as failure:
            await model.with_structured_output(Plan, method="json_schema").ainvoke(MESSAGES)
        plan = await model.with_structured_output(Plan, method="function_calling").ainvoke(MESSAGES)
    assert failure.value.status_code == 400
    assert failure.value.body["param"] == "response_format"
    assert "'json_schema' is not supported" in failure.value.body["message"]
    assert isinstance(plan, Plan)
    assert [(r.kind, r.channel) for r in server.requests] == [
        ("refused", "json_schema"),
        ("tool_call", "tools"),
    ]
    assert sum(r.kind == "refused" for r in server.requests) == 1


async def test_refusing_both_schema_channels_leaves_json_mode_and_text():
    with LoopbackServer(schema_responder(refuse_json_schema=True, refuse_tools=True)) as server:
        model = client(server)
        for method in ("json_schema", "function_calling"):
            with pytest.raises(openai.BadRequestError):
                await model.with_structured_output(Plan, method=method).ainvoke(MESSAGES)
        loose = await model.with_structured_output(method="json_mode").ainvoke(MESSAGES)
        plain = await model.ainvoke(MESSAGES)
    assert "answer" in loose
    assert plain.content.startswith("[demo] canned planner output")
    assert [(r.kind, r.channel) for r in server.requests] == [
        ("refused", "json_schema"),
        ("refused", "tools"),
        ("text", "json_object"),
        ("text", "text"),
    ]
    assert server.requests[1].body["tools"][0]["function"]["name"] == "Plan"


class Review(BaseModel):
    approved: bool
    feedback: str


async def test_a_review_loop_ends_once_the_reviser_has_answered():
    # The demo's quirk kept on purpose: the reviewer approves a draft marked as revised.
    reviewer = [SystemMessage("You are the reviewer.")]
    with LoopbackServer(schema_responder()) as server:
        model = client(server)
        reviews = model.with_structured_output(Review, method="json_schema")
        first = await reviews.ainvoke([*reviewer, HumanMessage("Draft: [demo] canned writer")])
        revised = await model.ainvoke(
            [SystemMessage("You are the reviser."), HumanMessage("Draft: d")]
        )
        second = await reviews.ainvoke([*reviewer, HumanMessage(f"Draft: {revised.content}")])
    assert first.approved is False
    assert revised.content.startswith("[demo] Revised")
    assert second.approved is True
    assert [r.role for r in server.requests] == ["reviewer", "reviser", "reviewer"]


async def test_tool_choice_naming_an_unknown_function_is_refused():
    tool = {"type": "function", "function": {"name": "Loose", "parameters": loose_schema()}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "Other"}},
    }
    with LoopbackServer(schema_responder()) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(server.base_url + "/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tool_choice"
    assert json.loads(response.content)["error"]["type"] == "invalid_request_error"
    assert [r.kind for r in server.requests] == ["refused"]


async def test_demo_responder_fills_schema_channels_and_prompt_schemas():
    prompt = "Task: t" + schema_instructions(Review)
    messages = [SystemMessage("You are the reviewer."), HumanMessage(prompt)]
    with LoopbackServer(demo_responder) as server:
        model = client(server)
        strict = model.with_structured_output(Review, method="json_schema", strict=True)
        assert isinstance(await strict.ainvoke(MESSAGES), Review)
        tools = model.with_structured_output(Review, method="function_calling")
        assert isinstance(await tools.ainvoke(MESSAGES), Review)
        # Unlike schema_responder, the demo reads a schema written in the prompt.
        json_mode = await model.bind(response_format={"type": "json_object"}).ainvoke(messages)
    Review.model_validate_json(json_mode.content)
    assert [r.kind for r in server.requests] == ["text", "tool_call", "text"]
