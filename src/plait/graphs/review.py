"""Review: research -> outline -> write -> review <-> revise -> finalize.

The loop stops when the reviewer approves or after ``max_iterations`` reviews; ``stop_reason``
in the state says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.human import ask_human
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState


class Review(BaseModel):
    """The reviewer's verdict on a draft."""

    approved: bool = Field(description="true only if the draft needs no change")
    feedback: str = Field(description="what to change; empty when approved")


class ReviewState(CommonState, total=False):
    research: str
    outline: str
    draft: str
    feedback: str
    iteration: int
    approved: bool
    stop_reason: str


@validated
def create_review_graph(
    *,
    max_iterations: Annotated[int, Field(ge=1, description="most review rounds")] = 3,
    human_review: Annotated[
        bool, Field(description="a person gives the verdict at each review")
    ] = False,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[ReviewState, PlaitContext]:
    """Research, outline and write, then review and revise until approved.

    After ``max_iterations`` reviews the draft is taken as it is. With ``human_review`` the
    run pauses at each review (``plait resume ID --approve`` or ``--reject --feedback``).
    ``prompts`` overrides role instructions, keyed by role (researcher, outliner, writer,
    reviewer, reviser).

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_review_graph(max_iterations=2).compile(checkpointer=saver)``
    """

    @node
    async def research(state: ReviewState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        reply = await ask(
            runtime, "researcher", role_prompt("researcher", prompts), user_prompt(state["task"])
        )
        say("researcher", "outliner", "research", reply.value)
        return {"research": reply.value}

    @node
    async def outline(state: ReviewState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        reply = await ask(
            runtime,
            "outliner",
            role_prompt("outliner", prompts),
            user_prompt(state["task"], research=state["research"]),
        )
        say("outliner", "writer", "outline", reply.value)
        return {"outline": reply.value}

    @node
    async def write(state: ReviewState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        reply = await ask(
            runtime,
            "writer",
            role_prompt("writer", prompts),
            user_prompt(state["task"], research=state["research"], outline=state["outline"]),
        )
        say("writer", "reviewer", "draft", reply.value)
        return {"draft": reply.value, "iteration": 0}

    @node
    async def review(state: ReviewState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        if human_review:
            decision = ask_human("Approve this draft?", draft=state["draft"])
            reviewer = "human"
            verdict = Review(
                approved=bool(decision.get("approved")),
                feedback=decision.get("feedback") or decision.get("answer") or "",
            )
        else:
            reviewer = "reviewer"
            reply = await ask_for(
                runtime,
                "reviewer",
                role_prompt("reviewer", prompts),
                user_prompt(state["task"], draft=state["draft"]),
                Review,
            )
            verdict = reply.value
        say(reviewer, "writer", "review", "approved" if verdict.approved else verdict.feedback)
        return {
            "approved": verdict.approved,
            "feedback": verdict.feedback,
            "iteration": state.get("iteration", 0) + 1,
        }

    @node
    async def revise(state: ReviewState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        reply = await ask(
            runtime,
            "reviser",
            role_prompt("reviser", prompts),
            user_prompt(state["task"], draft=state["draft"], feedback=state["feedback"]),
        )
        say("reviser", "reviewer", "draft", reply.value)
        return {"draft": reply.value}

    async def finalize(state: ReviewState) -> dict[str, Any]:
        rounds = state["iteration"]
        who = "a person" if human_review else "the reviewer"
        reason = (
            f"approved by {who} after {rounds} review(s)"
            if state["approved"]
            else f"max_iterations ({max_iterations}) reached without approval"
        )
        return {"result": state["draft"], "stop_reason": reason}

    async def after_review(state: ReviewState) -> Literal["revise", "finalize"]:
        done = state["approved"] or state["iteration"] >= max_iterations
        return "finalize" if done else "revise"

    builder = StateGraph(ReviewState, context_schema=PlaitContext)
    for step in (research, outline, write, review, revise, finalize):
        builder.add_node(step.__name__, step)
    builder.add_edge(START, "research")
    builder.add_edge("research", "outline")
    builder.add_edge("outline", "write")
    builder.add_edge("write", "review")
    builder.add_conditional_edges("review", after_review)
    builder.add_edge("revise", "review")
    builder.add_edge("finalize", END)
    return builder
