"""One model call as plait makes it: retried, timed out, failed over, budgeted and counted.

``call_model`` is the only place plait talks to a chat model. For each candidate (the role's
model, then each fallback) it checks the endpoint's circuit breaker and the run's budget,
calls with a timeout, retries transient faults with backoff (honouring ``Retry-After``), and
moves to the next candidate when one keeps failing.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from plait.errors import ModelCallError, PlaitError
from plait.models.context import PlaitContext
from plait.models.prices import cost_of
from plait.models.resilience import BudgetExceeded, is_transient
from plait.state.usage import AgentUsage


async def call_model(
    context: PlaitContext,
    role: str,
    agent: str,
    messages: list[BaseMessage],
    *,
    json_mode: bool = False,
) -> tuple[AIMessage, dict[str, AgentUsage]]:
    """Call the model serving ``role``; return the reply and its usage under ``agent``.

    Raises:
        ModelCallError: every candidate failed (or had its circuit open); says why.
        BudgetExceeded: a budget was reached before the call.
    """
    policy = context.policy_for(role)
    failure: Exception | None = None
    skipped = 0
    for model in context.candidates(role):
        breaker = context.breaker_for(model)
        client = _json_mode(model) if json_mode else model
        for attempt in range(policy.attempts):
            await _check_budget(context)  # before allow(): a probe must not be left hanging
            if not breaker.allow():
                skipped += 1
                break
            started = time.perf_counter()
            context.call_started()
            context.budget.pending += 1
            try:
                async with asyncio.timeout(policy.timeout):
                    reply = await client.ainvoke(
                        messages, config={"metadata": {"plait_role": role}}
                    )
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
                await asyncio.sleep(policy.delay(attempt, exc))
                continue
            finally:
                context.budget.pending -= 1
                context.call_ended()
            breaker.succeeded()
            return reply, {agent: _usage(context, model, reply, started)}
    await context.settle()
    raise ModelCallError(_describe_failure(failure, role, skipped)) from failure


async def _check_budget(context: PlaitContext) -> None:
    try:
        context.budget.check()
    except BudgetExceeded:
        await context.settle()  # let paid-for calls in other branches land first
        raise


def _usage(context: PlaitContext, model: Any, reply: AIMessage, started: float) -> AgentUsage:
    meta = reply.usage_metadata or {}
    name = (reply.response_metadata or {}).get("model_name") or getattr(model, "model_name", None)
    name = name or type(model).__name__
    tokens_in, tokens_out = meta.get("input_tokens", 0), meta.get("output_tokens", 0)
    cost = cost_of(name, tokens_in, tokens_out)
    context.budget.spend(tokens_in + tokens_out, cost)
    return AgentUsage(
        calls=1,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        seconds=round(time.perf_counter() - started, 4),
        cost=cost,
        models={name: 1},
    )


def _json_mode(model: BaseChatModel) -> BaseChatModel:
    # OpenAI-compatible servers accept JSON mode widely; strict json_schema mode rejects many
    # pydantic schemas and is patchy on local servers, so plait validates the JSON itself.
    if type(model).__name__ == "ChatOpenAI":
        return model.bind(response_format={"type": "json_object"})  # type: ignore[return-value]
    return model


def _describe_failure(exc: Exception | None, role: str, skipped: int) -> str:
    # langchain-core's provider-neutral errors (which the OpenAI integration raises) say what
    # happened; the HTTP status, where there is one, says the rest.
    from langchain_core import exceptions as lc

    if exc is None:
        return (
            f"model call for {role!r} failed: every endpoint's circuit breaker is open "
            "after repeated failures"
        )
    status = getattr(exc, "status_code", None)
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, (asyncio.TimeoutError, lc.ModelTimeoutError)):
        why = "the model endpoint did not answer in time"
    elif isinstance(exc, lc.ModelConnectionError):
        why = f"cannot reach the model endpoint: {detail}"
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
