"""The offline demo model: canned, deterministic, structurally valid replies for every role.

It lets every graph and the whole CLI run with no key and no network. Every reply starts with
``[demo]`` so nobody mistakes it for a real answer. Structured replies are built from the JSON
schema plait sends (as a tool's parameters, or in the prompt), so any pattern that asks for a
pydantic model gets a valid one without the demo knowing the pattern.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from plait.nodes.structured import SCHEMA_MARKER

MARKER = "[demo]"
# The demo reviewer approves once it is shown a revision, so a review loop runs two rounds.
REVISED = "[demo] Revised"


def tokens(text: str) -> int:
    """Count tokens roughly: four characters a token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def counted_result(messages: list[BaseMessage], text: str, model_name: str) -> ChatResult:
    """``text`` as a chat model's result, with usage reported as a real model reports it.

    The fake models share it so that they count alike: ``tokens`` of the prompt (every
    message's content, a line each) in, ``tokens`` of ``text`` out.
    """
    return ChatResult(generations=[ChatGeneration(message=_counted(messages, text, model_name))])


def _counted(messages: list[BaseMessage], text: str, model_name: str) -> AIMessage:
    prompt = "\n".join(str(m.content) for m in messages)
    return AIMessage(
        content=text,
        usage_metadata={
            "input_tokens": tokens(prompt),
            "output_tokens": tokens(text),
            "total_tokens": tokens(prompt) + tokens(text),
        },
        response_metadata={"model_name": model_name},
    )


class DemoChatModel(BaseChatModel):
    """A chat model that answers offline with canned text and reports usage like a real one.

    It has tool calling, as real chat models do, so plait asks it for structure with a
    forced tool and it fills in the tool's schema; asked with the schema in the prompt, it
    fills that in instead.
    """

    @property
    def _llm_type(self) -> str:
        return "plait-demo"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role = (run_manager.metadata if run_manager else {}).get("plait_role", "assistant")
        return self._reply(messages, role, kwargs.get("tools"))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role = (run_manager.metadata if run_manager else {}).get("plait_role", "assistant")
        return self._reply(messages, role, kwargs.get("tools"))

    def _reply(
        self, messages: list[BaseMessage], role: str, tools: list[dict[str, Any]] | None = None
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        if tools:
            function = tools[0]["function"]
            schema = function.get("parameters", {})
            args = _Filler(role, prompt).fill(schema, schema.get("$defs", {}))
            message = _counted(messages, json.dumps(args), "demo")
            call = {"name": function["name"], "args": args, "id": "demo-call", "type": "tool_call"}
            reply = AIMessage(
                content="",
                tool_calls=[call],
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
            )
            return ChatResult(generations=[ChatGeneration(message=reply)])
        if SCHEMA_MARKER in prompt:
            schema = json.loads(prompt.split(SCHEMA_MARKER, 1)[1].strip().splitlines()[0])
            text = json.dumps(_Filler(role, prompt).fill(schema, schema.get("$defs", {})))
        else:
            text = _canned_text(role, messages)
        return counted_result(messages, text, "demo")


def _canned_text(role: str, messages: list[BaseMessage]) -> str:
    last = str(messages[-1].content) if messages else ""
    first_line = next((line for line in last.splitlines() if line.strip()), "")[:80]
    if role in ("reviser",):
        return f"{REVISED} draft, addressing the review of: {first_line}"
    return f"{MARKER} canned {role} output for: {first_line}"


class _Filler:
    """Builds a deterministic instance of a JSON schema with canned values."""

    def __init__(self, role: str, prompt: str) -> None:
        self.role, self.prompt = role, prompt

    def fill(self, schema: dict[str, Any], defs: dict[str, Any], name: str = "", i: int = 0) -> Any:
        if "$ref" in schema:
            return self.fill(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name, i)
        if "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            return self.fill(options[0], defs, name, i) if options else None
        if "enum" in schema:
            return schema["enum"][i % len(schema["enum"])]
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        if kind == "object":
            props = schema.get("properties", {})
            return {key: self.fill(sub, defs, key, i) for key, sub in props.items()}
        if kind == "array":
            if name == "depends_on":
                return []
            count = max(schema.get("minItems", 3), 1)
            count = min(count, schema.get("maxItems", count))
            return [self.fill(schema.get("items", {}), defs, name, j) for j in range(count)]
        if kind == "boolean":
            return REVISED in self.prompt if name == "approved" else True
        if kind in ("number", "integer"):
            return _number(schema, name, integer=kind == "integer")
        if name == "id":
            return f"s{i + 1}"
        text = f"{MARKER} canned {name or 'value'} from the {self.role}"
        text = text.ljust(schema.get("minLength", 0), ".")
        return text[: schema["maxLength"]] if "maxLength" in schema else text


def _number(schema: dict[str, Any], name: str, *, integer: bool) -> float | int:
    # 0.8 for confidences and scores, else 1; moved inside the schema's bounds when needed.
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 0.8 if name == "confidence" or high == 1 else 1
    if (low is not None and value <= low) or (high is not None and value >= high):
        if low is not None and high is not None:
            value = (low + high) / 2
        elif low is not None:
            value = low + 1
        else:
            assert high is not None  # the value is out of bounds on one side at least
            value = high - 1
    return math.ceil(value) if integer else value
