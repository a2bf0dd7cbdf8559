"""A fourteenth pattern, written with plait's public kit only: brainstorm, then pick.

Ideators propose in parallel (one ``Send`` each; their ideas merge by id, so an ideator that
runs again on resume replaces its idea), then a picker chooses the best with a structured
reply whose choices are the ideas' ids. The options are the factory's typed signature: that is
all ``--set`` and ``plait graphs show`` need.

    plait run examples/brainstorm.py:build "Name a CLI for LLM workflows" --set ideas=4
    plait graphs show examples/brainstorm.py:build
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import Field, create_model
from typing_extensions import TypedDict

from plait import CommonState, PlaitContext, ask, ask_for, merge_by_key, node, say, user_prompt


class BrainstormState(CommonState, total=False):
    ideas: Annotated[dict[str, str], merge_by_key]


class IdeaInput(TypedDict):
    """What ``Send`` carries to one ideator: the task and its id, not the state."""

    task: str
    id: str


def build(
    *,
    ideas: Annotated[int, Field(ge=2, le=8, description="how many ideators propose at once")] = 3,
    style: Annotated[
        Literal["bold", "safe"], Field(description="what kind of idea to ask for")
    ] = "safe",
) -> StateGraph:
    """Ideators propose in parallel, a picker chooses the best idea."""
    ids = [f"idea_{n}" for n in range(1, ideas + 1)]
    pick = create_model(
        "Pick",
        best=(Literal[tuple(ids)], Field(description="the id of the best idea")),
        reason=(str, Field(description="why it is the best, in one sentence")),
    )

    def fan_out(state: BrainstormState) -> list[Send]:
        return [Send("ideator", IdeaInput(task=state["task"], id=i)) for i in ids]

    @node(branch=lambda payload: payload["id"])
    async def ideator(payload: IdeaInput, runtime: Any) -> dict[str, Any]:
        reply = await ask(
            runtime,
            "ideator",
            f"You are the ideator. Propose one {style} idea for the task, in two sentences.",
            user_prompt(payload["task"]),
        )
        say(payload["id"], "picker", "idea", reply.value, correlation_id=payload["id"])
        return {"ideas": {payload["id"]: reply.value}}

    @node
    async def picker(state: BrainstormState, runtime: Any) -> dict[str, Any]:
        listed = "\n".join(f"{i}: {state['ideas'][i]}" for i in ids)
        reply = await ask_for(
            runtime,
            "picker",
            "You are the picker. Choose the idea that best serves the task.",
            user_prompt(state["task"], ideas=listed),
            pick,
        )
        best = reply.value.best  # type: ignore[attr-defined]  # a model made at run time
        say("picker", "user", "result", best, correlation_id=best)
        return {"result": f"{state['ideas'][best]}\n\n({best}: {reply.value.reason})"}  # type: ignore[attr-defined]

    builder = StateGraph(BrainstormState, context_schema=PlaitContext)
    builder.add_node("ideator", ideator, input_schema=IdeaInput)
    builder.add_node("picker", picker)
    builder.add_conditional_edges(START, fan_out, ["ideator"])
    builder.add_edge("ideator", "picker")
    builder.add_edge("picker", END)
    return builder
