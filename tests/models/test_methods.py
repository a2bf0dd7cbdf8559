import json
from typing import Literal

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from plait.models import methods
from plait.models.demo import DemoChatModel
from plait.nodes.structured import parse_reply
from plait.testing import LoopbackServer, ScriptedChatModel, schema_responder


class Step(BaseModel):
    id: str
    note: str | None = None


class Plan(BaseModel):
    steps: list[Step] = Field(min_length=1)
    kind: Literal["a", "b"] = "a"
    confidence: float = Field(0.5, ge=0, le=1)


class Open(BaseModel):
    scores: dict[str, float]


def test_what_each_integration_offers_is_read_from_its_signature():
    assert methods.offered(ChatOpenAI) == ("json_schema", "function_calling", "json_mode", "prompt")
    assert methods.offered(DemoChatModel) == ("function_calling", "prompt")  # it has tools
    assert methods.offered(ScriptedChatModel) == ("prompt",)  # no tools, no method


def test_a_pinned_method_is_the_only_one_tried():
    model = DemoChatModel()
    assert methods.plan(model, "json_mode") == ("json_mode",)
    assert methods.plan(model, "auto") == ("function_calling", "prompt")


def test_a_strict_schema_requires_every_field_and_makes_optional_ones_nullable():
    text, strict = methods.json_schema(Plan)
    schema = json.loads(text)
    assert strict is True
    assert schema["title"] == "Plan"
    assert schema["required"] == ["steps", "kind", "confidence"]
    assert schema["additionalProperties"] is False
    assert {"type": "null"} in schema["properties"]["kind"]["anyOf"]
    step = schema["$defs"]["Step"]
    assert step["required"] == ["id", "note"] and step["additionalProperties"] is False
    assert "default" not in json.dumps(schema)  # strict mode has no defaults
    # Ranges stay in the schema: servers that support them enforce them.
    assert schema["properties"]["confidence"]["anyOf"][0]["maximum"] == 1


def test_an_open_mapping_cannot_be_strict_and_is_sent_as_it_is():
    text, strict = methods.json_schema(Open)
    assert strict is False
    assert json.loads(text)["properties"]["scores"]["additionalProperties"] == {"type": "number"}


def test_nulls_forced_into_optional_fields_fall_back_to_the_defaults():
    reply = json.dumps({"steps": [{"id": "s1", "note": None}], "kind": None, "confidence": None})
    plan = parse_reply(reply, Plan)
    assert plan == Plan(steps=[Step(id="s1")])  # note stays None: it may be null
    with pytest.raises(ValueError, match="steps"):
        parse_reply(json.dumps({"steps": None}), Plan)  # a required field may not be null


@pytest.mark.parametrize(
    "method, channel", [("json_schema", "json_schema"), ("function_calling", "tools")]
)
async def test_bind_sends_the_schema_in_the_methods_channel(method, channel):
    with LoopbackServer(schema_responder()) as server:
        model = ChatOpenAI(model="m", api_key="k", base_url=server.base_url, max_retries=0)
        reply = methods.raw_reply(
            await methods.bind(model, method, Plan).ainvoke([HumanMessage("plan it")])
        )
    (request,) = server.requests
    assert request.channel == channel
    if method == "json_schema":
        assert request.body["response_format"]["json_schema"]["strict"] is True
        data = json.loads(reply.content)
    else:
        assert request.body["tools"][0]["function"]["name"] == "Plan"
        data = methods.payload(reply)
    assert Plan.model_validate(methods.without_filled_nulls(data, Plan)).steps


async def test_json_mode_asks_for_any_object_and_prompt_sends_the_model_as_it_is():
    with LoopbackServer(schema_responder()) as server:
        model = ChatOpenAI(model="m", api_key="k", base_url=server.base_url, max_retries=0)
        await methods.bind(model, "json_mode", Plan).ainvoke([HumanMessage("plan it")])
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    assert methods.bind(model, "prompt", Plan) is model


def test_an_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="auto, json_schema, function_calling, json_mode, prompt"):
        methods.check_method("xml")
