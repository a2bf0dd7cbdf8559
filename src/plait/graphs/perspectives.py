"""Perspectives: specialists analyse the task in parallel, a chief architect synthesizes.

Each expert is sent (with ``Send``) only the task and its own perspective. Analyses merge by
perspective name, so an expert that re-runs on resume replaces its analysis. An expert that
fails or runs past its ``branch_timeout`` is recorded in ``errors``; the synthesis goes ahead with the
rest and names what is missing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import Field
from typing_extensions import TypedDict

from plait.errors import GraphSetupError, PlaitError
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, run_context, user_prompt
from plait.nodes.kit import node, say
from plait.state.common import CommonState, merge_by_key

DEFAULT_PERSPECTIVES = ("technical", "business", "security", "ux")

PROMPTS = {
    "technical_expert": "You are the technical_expert. Analyse the task as a senior engineer: "
    "architecture, feasibility, performance, operability and maintenance. Give findings, risks "
    "and a recommendation.",
    "business_expert": "You are the business_expert. Analyse the task for the business: value, "
    "cost, time to market, market fit and commercial risk. Give findings and a recommendation.",
    "security_expert": "You are the security_expert. Analyse the task for security and privacy: "
    "threats, attack surface, data protection and compliance. Give findings and mitigations.",
    "ux_expert": "You are the ux_expert. Analyse the task for the people who will use the "
    "result: their needs, usability and accessibility. Give findings and a recommendation.",
    "expert": "You are the {role}. Analyse the task from your perspective only. Give findings, "
    "risks and a recommendation.",
    "chief_architect": "You are the chief_architect. Weigh the experts' analyses, resolve where "
    "they conflict, and recommend one course of action with its trade-offs. Name any "
    "perspective that is missing and what that leaves uncertain.",
}

_NAME = re.compile(r"[a-z][a-z0-9_]*")


class BranchTimeout(PlaitError, TimeoutError):
    """An expert did not answer within its branch_timeout."""


class PerspectivesState(CommonState, total=False):
    analyses: Annotated[dict[str, str], merge_by_key]  # keyed by perspective
    retry: list[str]  # perspectives sent to the experts again (see synthesize)


class ExpertInput(TypedDict):
    """What ``Send`` carries to one expert: the task and its perspective, not the state."""

    task: str
    perspective: str


@validated
def create_perspectives_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    perspectives: Annotated[
        Sequence[str], Field(description="the perspectives, one expert each")
    ] = DEFAULT_PERSPECTIVES,
    branch_timeout: Annotated[
        float,
        Field(
            ge=0,
            description="seconds each expert may take before it is left out (0: no limit)",
        ),
    ] = 0,
    on_branch_error: Annotated[
        Literal["fail", "continue"],
        Field(
            description="a failed or late expert is named as missing (continue) or stops the "
            "run (fail)"
        ),
    ] = "continue",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[PerspectivesState, PlaitContext]:
    """Technical, business, security and UX experts analyse in parallel; a chief architect
    synthesizes.

    Each perspective ``p`` is served by the role ``p_expert`` (``security_expert``); the
    synthesis by ``chief_architect``.

    Args:
        prompts: Role instructions to override, keyed by role (``expert`` for any expert
            without its own text, ``security_expert``, ``chief_architect``...).

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_perspectives_graph(perspectives=["technical", "legal"]).compile()``

    """
    chosen = [p.strip().lower() for p in perspectives]
    if not chosen:
        raise GraphSetupError(
            f"perspectives must name at least one, e.g. {', '.join(DEFAULT_PERSPECTIVES)}"
        )
    for name in chosen:
        if not _NAME.fullmatch(name):
            raise GraphSetupError(
                f"invalid perspective {name!r}: use lowercase letters, digits and _, "
                f"e.g. {', '.join(DEFAULT_PERSPECTIVES)}"
            )
    if len(set(chosen)) != len(chosen):
        raise GraphSetupError(f"perspectives must be distinct, got {', '.join(chosen)}")

    async def dispatch(state: PerspectivesState) -> list[Send]:
        return [
            Send("expert", ExpertInput(task=state["task"], perspective=name)) for name in chosen
        ]

    @node
    async def expert(payload: ExpertInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        name = payload["perspective"]
        role = f"{name}_expert"
        call = ask(
            runtime,
            role,
            _instructions(role, prompts),
            user_prompt(payload["task"], your_perspective=name),
        )
        try:
            # wait_for bounds the model call alone, so a slow expert becomes a recorded gap;
            # LangGraph's TimeoutPolicy would fail the whole node (and so the run) instead.
            reply = await (asyncio.wait_for(call, branch_timeout) if branch_timeout else call)
        except TimeoutError:
            failure: PlaitError = BranchTimeout(f"{role} timed out after {branch_timeout:g}s")
        except PlaitError as exc:
            failure = exc
        else:
            say(role, "chief_architect", "analysis", reply.value)
            return {"analyses": {name: reply.value}}
        if on_branch_error == "fail":
            await run_context(runtime).settle()  # let the other experts' paid calls land
            raise failure
        say(role, "chief_architect", "failure", str(failure))
        return {"errors": {name: str(failure)}}

    async def ask_again(state: PerspectivesState) -> list[Send] | str:
        retry = state.get("retry") or []
        return [
            Send("expert", ExpertInput(task=state["task"], perspective=n)) for n in retry
        ] or END

    @node
    async def synthesize(
        state: PerspectivesState, runtime: Runtime[PlaitContext]
    ) -> dict[str, Any]:
        analyses, errors = state.get("analyses", {}), state.get("errors", {})
        missing = "\n".join(
            f"- {name}: {errors[name]}"
            for name in chosen
            if name in errors and name not in analyses
        )
        if not analyses:
            # Every expert failed (an endpoint down, say): nothing to recommend from. Each run
            # (the first, and every resume) asks them once more, then stops as failed and
            # resumable, rather than "done" with no answer.
            context = run_context(runtime)
            if "perspectives" in context.retried:
                raise PlaitError(
                    f"every perspective failed; `plait resume` retries them:\n{missing}"
                )
            context.retried.add("perspectives")
            return {"retry": list(chosen)}
        sections = {
            "analyses": "\n\n".join(
                f"[{name}]\n{analyses[name]}" for name in chosen if name in analyses
            )
        }
        if missing:
            sections["missing_perspectives"] = missing
        reply = await ask(
            runtime,
            "chief_architect",
            _instructions("chief_architect", prompts),
            user_prompt(state["task"], **sections),
        )
        say("chief_architect", "user", "result", reply.value)
        result = reply.value + (f"\n\nMissing perspectives:\n{missing}" if missing else "")
        return {"retry": [], "result": result}

    builder = StateGraph(PerspectivesState, context_schema=PlaitContext)
    builder.add_node("expert", expert, input_schema=ExpertInput)
    builder.add_node("chief_architect", synthesize)
    builder.add_conditional_edges(START, dispatch, ["expert"])
    builder.add_edge("expert", "chief_architect")
    builder.add_conditional_edges("chief_architect", ask_again, ["expert", END])
    return builder


def _instructions(role: str, prompts: Mapping[str, str] | None) -> str:
    """An override, else the text here for ``role``, else the ``expert`` text made its own."""
    for texts in (prompts or {}, PROMPTS):
        if role in texts:
            return texts[role]
    return _instructions("expert", prompts).replace("{role}", role)
