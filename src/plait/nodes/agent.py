"""Calling a model as an agent: the one place plait talks to chat models.

``ask`` returns text, ``ask_for`` returns a pydantic model; both return the usage to merge
into state. ``agent_node`` makes a whole graph node from role instructions, for authoring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel

from plait.errors import ModelCallError, PlaitError, StructuredOutputError
from plait.models.context import PlaitContext
from plait.nodes.structured import parse_reply, schema_instructions
from plait.state.log import envelope
from plait.state.usage import AgentUsage, add_usage

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

STRUCTURED_ATTEMPTS = 3


@dataclass
class Reply(Generic[T]):
    """What an agent said, and what saying it cost, ready to merge into state."""

    value: T
    usage: dict[str, AgentUsage]


def resolve_model(runtime: Runtime[PlaitContext] | None, role: str) -> BaseChatModel:
    """The chat model serving ``role`` in this run (the default context when none is given)."""
    context = runtime.context if runtime is not None and runtime.context else None
    if context is None:
        from plait.models.spec import default_model_spec

        context = PlaitContext(model=default_model_spec()[0])
    return context.model_for_role(role)


def user_prompt(task: str, **sections: str) -> str:
    """The user message: the task, then each named upstream output the agent needs."""
    parts = [f"Task: {task}"]
    parts += [f"{name.replace('_', ' ').capitalize()}:\n{text}" for name, text in sections.items()]
    return "\n\n".join(parts)


async def ask(
    runtime: Runtime[PlaitContext] | None,
    role: str,
    instructions: str,
    prompt: str,
    *,
    agent: str | None = None,
) -> Reply[str]:
    """Ask the model serving ``role`` for text.

    Args:
        runtime: The node's runtime (carries the run's models).
        role: The role whose model and usage line this call belongs to.
        instructions: The role's system text.
        prompt: The user message (see ``user_prompt``).
        agent: The name usage is recorded under; defaults to ``role``.
    """
    model = resolve_model(runtime, role)
    messages = [SystemMessage(instructions), HumanMessage(prompt)]
    reply, usage = await _invoke(model, messages, role, agent or role)
    return Reply(_text(reply), usage)


async def ask_for(
    runtime: Runtime[PlaitContext] | None,
    role: str,
    instructions: str,
    prompt: str,
    schema: type[M],
    *,
    agent: str | None = None,
    attempts: int = STRUCTURED_ATTEMPTS,
) -> Reply[M]:
    """Ask the model serving ``role`` for an instance of ``schema``.

    The schema goes in the prompt (and JSON mode is asked for where the client has it); the
    reply is repaired where possible and validated, and on failure the model is re-asked with
    the exact problem, up to ``attempts`` calls in all.

    Raises:
        StructuredOutputError: after the last attempt, naming the agent, what it returned
            and what was expected.
    """
    name = agent or role
    model = _json_mode(resolve_model(runtime, role))
    messages: list[BaseMessage] = [
        SystemMessage(instructions),
        HumanMessage(prompt + schema_instructions(schema)),
    ]
    usage: dict[str, AgentUsage] = {}
    problem, text = "", ""
    for _ in range(attempts):
        reply, spent = await _invoke(model, messages, role, name)
        usage = add_usage(usage, spent)
        text = _text(reply)
        try:
            return Reply(parse_reply(text, schema), usage)
        except ValueError as exc:
            problem = str(exc)
        messages += [
            reply,
            HumanMessage(f"That reply was not valid: {problem}. Reply again with only the JSON."),
        ]
    raise StructuredOutputError(name, text, schema.__name__, problem)


def agent_node(
    name: str,
    instructions: str,
    *,
    reads: Sequence[str] = (),
    writes: str | None = None,
    role: str | None = None,
) -> Callable[[dict[str, Any], Runtime[PlaitContext]], Awaitable[dict[str, Any]]]:
    """Make a graph node that asks one agent for text.

    The agent is sent its instructions, the task and the state keys in ``reads``, nothing else.

    Args:
        name: The node's agent name (usage and log are recorded under it).
        instructions: The role's system text.
        reads: State keys whose values the agent needs, in prompt order.
        writes: The state key the reply is written to (default: ``name``).
        role: The role whose model serves this agent (default: ``name``).

    Example:
        ``builder.add_node("critic", agent_node("critic", "You are the critic...", reads=["draft"]))``
    """
    target = writes or name

    async def node(state: dict[str, Any], runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        sections = {key: str(state.get(key, "")) for key in reads}
        reply = await ask(
            runtime, role or name, instructions, user_prompt(state["task"], **sections), agent=name
        )
        return {
            target: reply.value,
            "usage": reply.usage,
            "log": [envelope(name, "graph", "output", reply.value)],
        }

    node.__name__ = name
    return node


def _json_mode(model: BaseChatModel) -> BaseChatModel:
    # OpenAI-compatible servers accept JSON mode widely; strict json_schema mode rejects many
    # pydantic schemas and is patchy on local servers, so plait validates the JSON itself.
    if type(model).__name__ == "ChatOpenAI":
        return model.bind(response_format={"type": "json_object"})  # type: ignore[return-value]
    return model


async def _invoke(
    model: Any, messages: list[BaseMessage], role: str, agent: str
) -> tuple[AIMessage, dict[str, AgentUsage]]:
    started = time.perf_counter()
    try:
        reply = await model.ainvoke(messages, config={"metadata": {"plait_role": role}})
    except PlaitError:
        raise
    except Exception as exc:
        raise ModelCallError(_describe_failure(exc, role)) from exc
    meta = reply.usage_metadata or {}
    model_name = (reply.response_metadata or {}).get("model_name") or type(model).__name__
    usage = AgentUsage(
        calls=1,
        input_tokens=meta.get("input_tokens", 0),
        output_tokens=meta.get("output_tokens", 0),
        seconds=round(time.perf_counter() - started, 4),
        cost=0.0,
        models={model_name: 1},
    )
    return reply, {agent: usage}


def _describe_failure(exc: Exception, role: str) -> str:
    # langchain-core's provider-neutral errors (which the OpenAI integration raises) say what
    # happened; the HTTP status, where there is one, says the rest.
    from langchain_core import exceptions as lc

    status = getattr(exc, "status_code", None)
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, lc.ModelTimeoutError):
        why = "the model endpoint did not answer in time"
    elif isinstance(exc, lc.ModelConnectionError):
        why = f"cannot reach the model endpoint: {detail}"
    elif status == 401 or isinstance(exc, lc.ModelAuthenticationError):
        why = "the endpoint rejected the API key (HTTP 401)"
    elif status == 404 or isinstance(exc, lc.ModelNotFoundError):
        why = f"the endpoint does not know the model (HTTP 404): {detail}"
    elif status == 429 or isinstance(exc, lc.ModelRateLimitError):
        why = "rate limited (HTTP 429), still after the client's retries"
    elif status is not None and status >= 500:
        why = f"the endpoint failed (HTTP {status}), still after the client's retries"
    elif status is not None:
        why = f"the endpoint refused the request (HTTP {status}): {detail}"
    elif isinstance(exc, json.JSONDecodeError):
        why = f"the endpoint answered with a body that is not JSON ({detail})"
    else:
        why = f"{type(exc).__name__}: {detail}"
    return f"model call for {role!r} failed: {why}"


def _text(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
