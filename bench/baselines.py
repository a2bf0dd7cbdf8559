"""Plain LangGraph: the same workflows written the way LangGraph's docs and tutorials write them.

- Sync ``def`` nodes calling ``model.invoke`` (``graph.invoke`` runs parallel branches on its
  thread pool).
- ``SqliteSaver.from_conn_string(path)`` with its defaults.
- The conversation is a ``messages`` list (``add_messages``) and each agent is sent the whole
  transcript, as in the chatbot and multi-agent tutorials.
- Fan-out: the planner's plan is parsed into a pydantic model, and each ``Send`` carries a copy
  of the state plus the worker's section, as in the map-reduce tutorial.
- Structured output: the tutorials use ``with_structured_output``, which sends the JSON schema
  with the request; here the schema goes in the system message (the same tokens), and the reply
  is validated with pydantic.

The role instructions are plait's, word for word, so both sides send the same instructions and
get the same replies; only what each framework adds around them differs.
"""

from __future__ import annotations

import json
import operator
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send
from pydantic import BaseModel
from typing_extensions import TypedDict

from plait.nodes.prompts import ROLE_PROMPTS


class Section(BaseModel):
    id: str
    role: str
    description: str


class Plan(BaseModel):
    subtasks: list[Section]


class Feedback(BaseModel):
    approved: bool
    feedback: str


def _with_schema(role: str, schema: type[BaseModel]) -> str:
    return (
        f"{ROLE_PROMPTS[role]}\n\nRespond in JSON matching this schema:\n"
        f"{json.dumps(schema.model_json_schema())}"
    )


# --- orchestrator-worker -------------------------------------------------------------------


class OrchestratorState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    sections: list[dict]
    completed_sections: Annotated[list[str], operator.add]
    final_report: str


class WorkerState(OrchestratorState):
    section: dict


def orchestrator_builder(model: Any) -> StateGraph:
    """Planner, one worker per section (``Send``), synthesizer: the tutorial's shape."""

    def orchestrator(state: OrchestratorState) -> dict:
        reply = model.invoke([SystemMessage(_with_schema("planner", Plan)), *state["messages"]])
        plan = Plan.model_validate_json(reply.content)
        return {"sections": [s.model_dump() for s in plan.subtasks], "messages": [reply]}

    def llm_call(state: WorkerState) -> dict:
        section = state["section"]
        reply = model.invoke(
            [
                SystemMessage(ROLE_PROMPTS[section["role"]]),
                *state["messages"],
                HumanMessage(f"Your section: {section['description']}"),
            ]
        )
        return {"completed_sections": [f"[{section['id']}] {reply.content}"]}

    def synthesizer(state: OrchestratorState) -> dict:
        reply = model.invoke(
            [
                SystemMessage(ROLE_PROMPTS["synthesizer"]),
                *state["messages"],
                HumanMessage("Worker results:\n\n" + "\n\n".join(state["completed_sections"])),
            ]
        )
        return {"final_report": reply.content, "messages": [reply]}

    def assign_workers(state: OrchestratorState) -> list[Send]:
        return [Send("llm_call", {**state, "section": s}) for s in state["sections"]]

    builder = StateGraph(OrchestratorState)
    builder.add_node("orchestrator", orchestrator)
    builder.add_node("llm_call", llm_call)
    builder.add_node("synthesizer", synthesizer)
    builder.add_edge(START, "orchestrator")
    builder.add_conditional_edges("orchestrator", assign_workers, ["llm_call"])
    builder.add_edge("llm_call", "synthesizer")
    builder.add_edge("synthesizer", END)
    return builder


# --- review / revise loop ------------------------------------------------------------------


class ReviewState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: bool
    iteration: int
    draft: str
    final: str


def review_builder(model: Any, max_iterations: int = 3) -> StateGraph:
    """research -> outline -> write -> review <-> revise -> finalize, on one transcript."""

    def agent(role: str):
        def node(state: ReviewState) -> dict:
            reply = model.invoke([SystemMessage(ROLE_PROMPTS[role]), *state["messages"]])
            update: dict = {"messages": [reply]}
            if role in ("writer", "reviser"):
                update["draft"] = reply.content
            return update

        node.__name__ = role
        return node

    def review(state: ReviewState) -> dict:
        reply = model.invoke(
            [SystemMessage(_with_schema("reviewer", Feedback)), *state["messages"]]
        )
        verdict = Feedback.model_validate_json(reply.content)
        return {
            "messages": [reply],
            "approved": verdict.approved,
            "iteration": state.get("iteration", 0) + 1,
        }

    def finalize(state: ReviewState) -> dict:
        return {"final": state["draft"]}

    def route(state: ReviewState) -> Literal["revise", "finalize"]:
        if state["approved"] or state["iteration"] >= max_iterations:
            return "finalize"
        return "revise"

    builder = StateGraph(ReviewState)
    builder.add_node("research", agent("researcher"))
    builder.add_node("outline", agent("outliner"))
    builder.add_node("write", agent("writer"))
    builder.add_node("review", review)
    builder.add_node("revise", agent("reviser"))
    builder.add_node("finalize", finalize)
    builder.add_edge(START, "research")
    builder.add_edge("research", "outline")
    builder.add_edge("outline", "write")
    builder.add_edge("write", "review")
    builder.add_conditional_edges("review", route)
    builder.add_edge("revise", "review")
    builder.add_edge("finalize", END)
    return builder


def start(task: str) -> dict:
    """The input both plain graphs take: the task as the first message of the transcript."""
    return {"messages": [HumanMessage(task)]}


def result_of(kind: str, values: dict) -> str:
    return values["final_report"] if kind == "orchestrator" else values["final"]


def builder_for(kind: str, model: Any, **options: Any) -> StateGraph:
    return (
        orchestrator_builder(model) if kind == "orchestrator" else review_builder(model, **options)
    )


def sqlite_saver(path: str) -> AbstractContextManager[SqliteSaver]:
    """The docs' durable saver: ``SqliteSaver.from_conn_string`` with its defaults."""
    return SqliteSaver.from_conn_string(path)
