"""How a structured reply is asked for: the endpoint's own schema channel first.

A method is one of ``json_schema`` (the schema in ``response_format``, which OpenAI-compatible
servers enforce), ``function_calling`` (the schema as a forced tool), ``json_mode`` (any JSON
object, the schema in the prompt) or ``prompt`` (the schema in the prompt only). What a model
offers is read from its LangChain integration's ``with_structured_output`` signature, so every
provider is treated alike and nothing is keyed on a class name. Whatever the method, plait
validates the reply with pydantic itself and re-asks with the exact problem: a schema cannot
say everything a model must satisfy.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import typing
from functools import lru_cache
from typing import Any, cast

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableSequence
from pydantic import BaseModel

METHODS = ("json_schema", "function_calling", "json_mode", "prompt")
"""Every method, strongest first: the order ``auto`` tries them in."""
CHOICES = ("auto", *METHODS)
IN_PROMPT = frozenset({"json_mode", "prompt"})
"""Methods that need the schema written into the prompt."""


def check_method(method: str) -> str:
    """Return ``method`` if it is a known choice.

    Raises:
        ValueError: naming the valid choices.
    """
    if method not in CHOICES:
        raise ValueError(
            f"unknown structured-output method {method!r}; choose one of {', '.join(CHOICES)}"
        )
    return method


@lru_cache(maxsize=64)
def offered(model_class: type[BaseChatModel]) -> tuple[str, ...]:
    """The methods a chat model class offers, strongest first, always ending with ``prompt``."""
    try:
        params = inspect.signature(model_class.with_structured_output).parameters
    except (TypeError, ValueError):
        return ("prompt",)
    if "method" in params:
        names = _literal_names(model_class, params["method"].annotation)
        return tuple(m for m in METHODS if m in names or m == "prompt")
    # langchain-core's default with_structured_output forces a tool, if the class has tools.
    if getattr(model_class, "bind_tools", None) is not BaseChatModel.bind_tools:
        return ("function_calling", "prompt")
    return ("prompt",)


def _literal_names(model_class: type[BaseChatModel], annotation: Any) -> set[str]:
    # Integrations use `from __future__ import annotations`, so the Literal may be a string.
    if isinstance(annotation, str):
        return set(re.findall(r"['\"](\w+)['\"]", annotation))
    return {a for a in typing.get_args(annotation) if isinstance(a, str)}


def plan(model: BaseChatModel, pinned: str = "auto") -> tuple[str, ...]:
    """The methods to try for ``model``, in order: the pinned one alone, or all it offers."""
    if pinned != "auto":
        return (pinned,)
    return offered(type(model))


@lru_cache(maxsize=256)  # building a JSON schema costs more than the rest of a call's framework
def json_schema(schema: type[BaseModel]) -> tuple[str, bool]:
    """The schema to send, as JSON text, and whether it is strict-compatible.

    Strict mode (OpenAI's and vLLM's guaranteed match) needs every property required and no
    extra properties; optional fields become nullable, and ``without_filled_nulls`` turns the
    nulls back into the pydantic defaults. Schemas with open objects (``dict[str, X]``) cannot
    be strict and are sent as they are.
    """
    raw = copy.deepcopy(_plain_schema(schema))
    strict = _strict(copy.deepcopy(raw))
    sent = strict if strict is not None else raw
    sent["title"] = schema.__name__
    sent.setdefault("description", f"A {schema.__name__}.")
    return json.dumps(sent, separators=(",", ":")), strict is not None


def _strict(node: Any) -> Any:
    """``node`` made strict-compatible in place, or None when it cannot be."""
    if isinstance(node, list):
        done = [_strict(item) for item in node]
        return None if any(d is None for d in done) else done
    if not isinstance(node, dict):
        return node
    node.pop("default", None)  # strict mode has no defaults; plait's validation fills them
    if node.get("type") == "object" or "properties" in node:
        if isinstance(node.get("additionalProperties"), dict):
            return None  # an open mapping: no fixed set of keys to require
        props = node.setdefault("properties", {})
        for key, sub in props.items():
            if key not in node.get("required", []) and not _nullable(sub):
                props[key] = {"anyOf": [sub, {"type": "null"}]}
        node["required"] = list(props)
        node["additionalProperties"] = False
    for key, value in list(node.items()):
        if key in ("properties", "$defs"):
            for name, sub in value.items():
                if (done := _strict(sub)) is None:
                    return None
                value[name] = done
        elif key in ("items", "anyOf", "allOf", "oneOf") and (done := _strict(value)) is None:
            return None
    return node


def _nullable(node: Any) -> bool:
    return isinstance(node, dict) and (
        node.get("type") == "null" or any(_nullable(o) for o in node.get("anyOf", []))
    )


def without_filled_nulls(data: Any, schema: type[BaseModel]) -> Any:
    """``data`` with the nulls a strict schema forced into optional fields removed."""
    raw = _plain_schema(schema)
    return _drop_nulls(data, raw, raw.get("$defs", {}))


@lru_cache(maxsize=256)
def _plain_schema(schema: type[BaseModel]) -> dict[str, Any]:
    return schema.model_json_schema()


def _drop_nulls(data: Any, node: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in node:
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    if isinstance(data, dict) and "properties" in node:
        required = set(node.get("required", []))
        out = {}
        for key, value in data.items():
            sub = node["properties"].get(key, {})
            if value is None and key not in required and not _nullable(sub):
                continue
            out[key] = _drop_nulls(value, sub, defs) if isinstance(sub, dict) else value
        return out
    if isinstance(data, list) and isinstance(node.get("items"), dict):
        return [_drop_nulls(item, node["items"], defs) for item in data]
    if "anyOf" in node and data is not None:
        for option in node["anyOf"]:
            if isinstance(option, dict) and option.get("type") != "null":
                return _drop_nulls(data, option, defs)
    return data


def bind(
    model: BaseChatModel, method: str, schema: type[BaseModel]
) -> Runnable[LanguageModelInput, Any]:
    """``model`` set up to ask for ``schema`` by ``method``; it returns the model's message.

    The integration's ``with_structured_output`` does the setting up (tools, response format,
    per provider); only its first step, the bound model, is kept: plait parses and validates
    the reply itself, so the integration's parser would be work done twice.
    """
    if method == "prompt":
        return model
    text, strict = json_schema(schema)
    params = inspect.signature(type(model).with_structured_output).parameters
    kwargs: dict[str, Any] = {}
    if "method" in params:
        kwargs["method"] = method
    if "strict" in params and method != "json_mode":
        kwargs["strict"] = strict
    chain = model.with_structured_output(json.loads(text), **kwargs)
    if isinstance(chain, RunnableSequence):
        return chain.first
    # An integration that does not build "model | parser": keep its raw reply (raw_reply).
    return model.with_structured_output(json.loads(text), include_raw=True, **kwargs)


def raw_reply(output: Any) -> AIMessage:
    """The model's own message, from a bound model's output (``include_raw``) or a plain one."""
    # Unchecked: what a bound model returns is typed Any by LangChain.
    if isinstance(output, dict) and "raw" in output:
        return cast(AIMessage, output["raw"])
    return cast(AIMessage, output)


def payload(reply: AIMessage) -> Any:
    """What the reply offers as the structured value: a tool call's arguments, else None."""
    calls = reply.tool_calls or []
    return calls[0]["args"] if calls else None
