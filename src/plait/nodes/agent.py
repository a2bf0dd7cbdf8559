"""Calling a model as an agent: the one place plait talks to chat models.

``ask`` returns text, ``ask_for`` returns a pydantic model; both return the usage to merge
into state. ``agent_node`` makes a whole graph node from role instructions, for authoring.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel

from plait.errors import StructuredOutputError
from plait.models.context import PlaitContext
from plait.models.methods import payload
from plait.nodes.calls import call_model, text_of
from plait.nodes.kit import node, say
from plait.nodes.structured import parse_reply
from plait.state.usage import AgentUsage, add_usage

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

STRUCTURED_ATTEMPTS = 3


@dataclass
class Reply(Generic[T]):
    """What an agent said, and what saying it cost, ready to merge into state."""

    value: T
    usage: dict[str, AgentUsage]


def run_context(runtime: Runtime[PlaitContext] | None) -> PlaitContext:
    """The run's context; a default one (the default model) when the graph got none."""
    # Runtime.context is typed as always set, but is None when the graph got no context.
    context = runtime.context if runtime is not None and runtime.context is not None else None
    if context is None:
        from plait.models.spec import default_model_spec

        context = PlaitContext(model=default_model_spec()[0])
    return context


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
    messages = [SystemMessage(instructions), HumanMessage(prompt)]
    reply, usage = await call_model(run_context(runtime), role, agent or role, messages)
    return Reply(text_of(reply), usage)


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

    The schema goes through the endpoint's own channel (``json_schema`` response format, a
    forced tool, JSON mode or the prompt: see ``plait.models.methods``); the reply is repaired
    where possible and validated with pydantic, and on failure the model is re-asked with the
    exact problem, up to ``attempts`` calls in all.

    Raises:
        StructuredOutputError: after the last attempt, naming the agent, what it returned
            and what was expected.
    """
    name = agent or role
    context = run_context(runtime)
    messages: list[BaseMessage] = [SystemMessage(instructions), HumanMessage(prompt)]
    usage: dict[str, AgentUsage] = {}
    problem, text = "", ""
    for _ in range(attempts):
        reply, spent = await call_model(context, role, name, messages, schema=schema)
        usage = add_usage(usage, spent)
        args = payload(reply)
        text = text_of(reply) if args is None else json.dumps(args)
        try:
            return Reply(parse_reply(text, schema), usage)
        except ValueError as exc:
            problem = str(exc)
        messages += [reply, *_feedback(reply, problem)]
    await context.settle()  # let paid-for calls in other branches land before the run stops
    raise StructuredOutputError(name, text, schema.__name__, problem)


def _feedback(reply: AIMessage, problem: str) -> list[BaseMessage]:
    # A tool call must be answered by a tool message before anything else is said.
    if reply.tool_calls:
        return [
            ToolMessage(
                f"Invalid: {problem}. Call the tool again, corrected.", tool_call_id=c["id"]
            )
            for c in reply.tool_calls
            if c.get("id")
        ]
    return [HumanMessage(f"That reply was not valid: {problem}. Reply again with only the JSON.")]


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

    @node
    async def run(state: dict[str, Any], runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        sections = {key: str(state.get(key, "")) for key in reads}
        reply = await ask(
            runtime, role or name, instructions, user_prompt(state["task"], **sections), agent=name
        )
        say(name, "graph", "output", reply.value)
        return {target: reply.value}

    run.__name__ = name
    return run
