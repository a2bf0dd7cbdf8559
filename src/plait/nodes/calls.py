"""One model call as plait makes it: retried, timed out, failed over, budgeted and counted.

``call_model`` is the only place plait talks to a chat model. For each candidate (the role's
model, then each fallback; a pool resolved to one member) it checks the endpoint's circuit
breaker and the run's budget, asks for structure through the endpoint's own channel (falling
back to the next method when the endpoint refuses one, once per endpoint per run), calls with a
timeout, retries transient faults with backoff (honouring ``Retry-After``), and moves to the
next candidate when one keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from plait.errors import ModelCallError, PlaitError
from plait.models import methods
from plait.models.context import Endpoint, PlaitContext
from plait.models.pool import tagged
from plait.models.prices import cost_of, price_of
from plait.models.resilience import BudgetExceeded, is_transient, is_unreachable
from plait.nodes.kit import book
from plait.nodes.structured import schema_instructions
from plait.state.usage import AgentUsage, add_usage

# langchain-openai warns, on an endpoint's refusal of json_schema, to use function calling;
# plait has just done so by itself and says so in its own note, so the advice is noise.
warnings.filterwarnings("ignore", r"This model does not support OpenAI's structured", UserWarning)
warnings.filterwarnings("ignore", r"Invalid schema for OpenAI's structured", UserWarning)


async def call_model(
    context: PlaitContext,
    role: str,
    agent: str,
    messages: list[BaseMessage],
    *,
    schema: type[BaseModel] | None = None,
) -> tuple[AIMessage, dict[str, AgentUsage]]:
    """Call the model serving ``role``; return the reply and its usage under ``agent``.

    With ``schema``, the reply is asked for through the endpoint's structured-output channel
    (see ``plait.models.methods``); the caller validates it.

    Raises:
        ModelCallError: every candidate failed (or had its circuit open); says why.
        BudgetExceeded: a budget was reached before the call.
    """
    policy = context.policy_for(role)
    failure: Exception | None = None
    skipped, last = 0, None
    spent: dict[str, AgentUsage] = {}
    for candidate in context.candidates(role):
        for attempt in range(policy.attempts):
            # The budget before allow(): a probe must not be left hanging.
            async with _reserved(context), context.endpoint(candidate, role) as endpoint:
                last = endpoint.model
                breaker = context.breaker_for(endpoint.model)
                if not breaker.allow():
                    skipped += 1
                    break
                started = time.perf_counter()
                try:
                    reply = await _ask(context, endpoint, role, messages, schema, policy.timeout)
                except (PlaitError, asyncio.CancelledError):
                    breaker.abandoned()  # no verdict on the endpoint; a half-open probe must end
                    raise
                except Exception as exc:
                    # Only faults of the endpoint count against it; a 400 or a 404 means it is up.
                    if is_transient(exc):
                        breaker.failed()
                    else:
                        breaker.succeeded()
                    failure = exc
                    if not is_transient(exc) or attempt + 1 == policy.attempts:
                        break
                    delay = policy.delay(attempt, exc)
                else:
                    breaker.succeeded()
                    if endpoint.member is not None:
                        reply = tagged(reply, endpoint.member)
                    spent = add_usage(
                        spent, {agent: _usage(context, endpoint.model, reply, started)}
                    )
                    if schema is not None or not _empty(reply):
                        book(spent)
                        return reply, spent
                    # An empty answer is paid for but useless: ask again, then fail clearly.
                    failure = EmptyReply("the model returned an empty reply")
                    if attempt + 1 == policy.attempts:
                        break
                    delay = 0.0
            await asyncio.sleep(delay)  # outside the endpoint: a waiting retry holds no slot
    book(spent)  # empty replies were paid for, even though the call failed
    await context.settle()
    where = context.endpoint_key(last) if last is not None else ""
    raise ModelCallError(_describe_failure(failure, role, skipped, where)) from failure


class EmptyReply(Exception):
    """A text reply with no text (or only whitespace) and no tool call."""


def _empty(reply: AIMessage) -> bool:
    return not reply.tool_calls and not text_of(reply).strip()


async def _ask(
    context: PlaitContext,
    endpoint: Endpoint,
    role: str,
    messages: list[BaseMessage],
    schema: type[BaseModel] | None,
    timeout: float | None,
) -> AIMessage:
    """One request; for a structured one, by the endpoint's method, found once per run."""
    if schema is None:
        return await _send(context, endpoint.model, messages, role, timeout)
    key = context.endpoint_key(endpoint.model)
    plan = methods.plan(endpoint.model, endpoint.structured)
    known = context.methods.get(key)
    if known in plan or len(plan) == 1:
        method = known if known in plan else plan[0]
        return await _structured(context, endpoint.model, method, messages, schema, role, timeout)
    async with context.method_lock(key):  # the others wait: a refusal is sent once per endpoint
        if context.methods.get(key) not in plan:
            return await _discover(context, endpoint, key, plan, messages, schema, role, timeout)
    method = context.methods[key]  # found by another branch while this one waited
    return await _structured(context, endpoint.model, method, messages, schema, role, timeout)


async def _discover(
    context: PlaitContext,
    endpoint: Endpoint,
    key: str,
    plan: tuple[str, ...],
    messages: list[BaseMessage],
    schema: type[BaseModel],
    role: str,
    timeout: float | None,
) -> AIMessage:
    """Try the methods in order until the endpoint accepts one; remember it for the run."""
    refused: list[str] = []
    for method in plan:
        try:
            reply = await _structured(
                context, endpoint.model, method, messages, schema, role, timeout
            )
        except Exception as exc:
            if method == plan[-1] or not _refusal(exc):
                raise
            refused.append(f"{method} ({_short(exc)})")
            continue
        context.methods[key] = method
        if refused:
            context.notice(
                f"{key} refused structured output by {', '.join(refused)}; "
                f"using {method} for the rest of the run"
            )
        return reply
    raise AssertionError("unreachable: the last method's failure is raised")


async def _structured(
    context: PlaitContext,
    model: BaseChatModel,
    method: str,
    messages: list[BaseMessage],
    schema: type[BaseModel],
    role: str,
    timeout: float | None,
) -> AIMessage:
    if method in methods.IN_PROMPT:
        messages = with_schema_in_prompt(messages, schema)
    client = context.bound.get((id(model), method, schema))
    if client is None:
        try:
            client = methods.bind(model, method, schema)
        except (NotImplementedError, ValueError) as exc:  # the integration lacks this method
            raise _MethodUnavailable(str(exc)) from exc
        context.bound[(id(model), method, schema)] = client
    return methods.raw_reply(await _send(context, client, messages, role, timeout))


_Reply = TypeVar("_Reply")


async def _send(
    context: PlaitContext,
    client: Runnable[LanguageModelInput, _Reply],
    messages: list[BaseMessage],
    role: str,
    timeout: float | None,
) -> _Reply:
    context.call_started()  # first: a branch about to fail the run waits for this one
    try:
        if context.on_call is not None:
            await context.on_call(1)
        async with asyncio.timeout(timeout):
            return await client.ainvoke(messages, config={"metadata": {"plait_role": role}})
    except Exception as exc:
        if context.on_call is not None and getattr(exc, "status_code", None) is not None:
            await context.on_call(-1)  # the endpoint answered with an error: nothing to pay
        raise
    finally:
        context.call_ended()


class _MethodUnavailable(Exception):
    """The model's integration cannot ask for structure this way (no request was sent)."""


def _refusal(exc: Exception) -> bool:
    # An endpoint that lacks a structured-output method answers 400 (or 422) to it; one that
    # is down, throttled or failing answers otherwise, and is retried rather than downgraded.
    return isinstance(exc, _MethodUnavailable) or getattr(exc, "status_code", None) in (400, 422)


def _short(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status else "not supported by its integration"


def with_schema_in_prompt(
    messages: list[BaseMessage], schema: type[BaseModel]
) -> list[BaseMessage]:
    """``messages`` with the schema text appended to the first user message."""
    out = list(messages)
    for index, message in enumerate(out):
        if isinstance(message, HumanMessage):
            out[index] = HumanMessage(str(message.content) + schema_instructions(schema))
            break
    return out


def endpoint_key(model: Any) -> str:
    """A stable name for an endpoint: its model name and URL (or its class, for local fakes)."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    url = next(
        (
            str(v)
            for a in ("openai_api_base", "base_url", "anthropic_api_url", "api_base")
            if (v := getattr(model, a, None))
        ),
        None,
    )
    label = name if isinstance(name, str) else type(model).__name__
    return f"{label} at {url}" if url else label


@contextlib.asynccontextmanager
async def _reserved(context: PlaitContext) -> AsyncIterator[None]:
    """Check the budget and hold a call's place in it until the attempt ends.

    The place is taken with no await after the check, so branches that wait afterwards (for
    a pool member, a method, the call counter's commit) cannot all pass one check together.
    """
    await _check_budget(context)
    context.budget.pending += 1
    try:
        yield
    finally:
        context.budget.pending -= 1


async def _check_budget(context: PlaitContext) -> None:
    try:
        context.budget.check()
    except BudgetExceeded:
        await context.settle()  # let paid-for calls in other branches land first
        raise


def _usage(context: PlaitContext, model: Any, reply: AIMessage, started: float) -> AgentUsage:
    meta: UsageMetadata | dict[str, int] = reply.usage_metadata or {}
    name = (reply.response_metadata or {}).get("model_name") or getattr(model, "model_name", None)
    name = name or type(model).__name__
    tokens_in, tokens_out = meta.get("input_tokens", 0), meta.get("output_tokens", 0)
    cost = cost_of(name, tokens_in, tokens_out, overrides=context.prices)
    if context.budget.max_cost is not None and price_of(name, overrides=context.prices) is None:
        context.notice(
            f"no known price for model {name!r}: --max-cost counts its calls as free; "
            "give it one under [prices] in plait.toml"
        )
    context.budget.spend(tokens_in + tokens_out, cost)
    return AgentUsage(
        calls=1,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        seconds=round(time.perf_counter() - started, 4),
        cost=cost,
        models={name: 1},
    )


def _describe_failure(exc: Exception | None, role: str, skipped: int, where: str = "") -> str:
    # langchain-core's provider-neutral errors (which the OpenAI integration raises) say what
    # happened; the HTTP status, where there is one, says the rest.
    from langchain_core import exceptions as lc

    if exc is None:
        return (
            f"model call for {role!r} failed: every endpoint's circuit breaker is open "
            "after repeated failures"
        )
    from plait.secrets import redact

    status = getattr(exc, "status_code", None)
    # Redacted before it is cut: an endpoint may echo the key, and this message is saved in
    # the checkpoints (LangGraph's error writes), the thread index and the output.
    detail = redact(str(exc)).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, (asyncio.TimeoutError, lc.ModelTimeoutError)):
        why = "the model endpoint did not answer in time"
    elif isinstance(exc, lc.ModelConnectionError) or is_unreachable(exc):
        # SDKs say only "Connection error."; the endpoint's name says where.
        why = f"cannot reach the model endpoint{f' {where}' if where else ''}: {detail}"
    elif status == 401 or isinstance(exc, lc.ModelAuthenticationError):
        why = "the endpoint rejected the API key (HTTP 401)"
    elif status == 404 or isinstance(exc, lc.ModelNotFoundError):
        why = f"the endpoint does not know the model (HTTP 404): {detail}"
    elif status == 429 or isinstance(exc, lc.ModelRateLimitError):
        why = "rate limited (HTTP 429), still after retries"
    elif status is not None and status >= 500:
        why = f"the endpoint failed (HTTP {status}), still after retries"
    elif status is not None:
        why = f"the endpoint refused the request (HTTP {status}): {detail}"
    elif isinstance(exc, EmptyReply):
        why = f"{detail}, still after retries"
    elif isinstance(exc, json.JSONDecodeError):
        why = f"the endpoint answered with a body that is not JSON ({detail})"
    else:
        why = f"{type(exc).__name__}: {detail}"
    if skipped:
        why += f" ({skipped} endpoint(s) skipped: circuit open)"
    return f"model call for {role!r} failed: {why}"


def text_of(message: AIMessage) -> str:
    """The text of a reply, whether its content is a string or a list of parts."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
