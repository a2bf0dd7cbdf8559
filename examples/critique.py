"""An authored graph: draft -> critique -> polish, built from plait's agent nodes.

Run it like a prebuilt graph:  plait run examples/critique.py:build "Explain idempotency keys"
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from plait import CommonState, PlaitContext, agent_node


class CritiqueState(CommonState, total=False):
    draft: str
    critique: str


def build(*, tone: str = "plain") -> StateGraph:
    """A three-agent graph; ``tone`` is an option: ``--set tone=formal``."""
    builder = StateGraph(CritiqueState, context_schema=PlaitContext)
    builder.add_node(
        "drafter",
        agent_node(
            "drafter",
            f"You are the drafter. Write a short, {tone} answer to the task.",
            writes="draft",
        ),
    )
    builder.add_node(
        "critic",
        agent_node(
            "critic",
            "You are the critic. List the three biggest weaknesses of the draft.",
            reads=["draft"],
            writes="critique",
        ),
    )
    builder.add_node(
        "polisher",
        agent_node(
            "polisher",
            "You are the polisher. Rewrite the draft to fix every weakness listed.",
            reads=["draft", "critique"],
            writes="result",
        ),
    )
    builder.add_edge(START, "drafter")
    builder.add_edge("drafter", "critic")
    builder.add_edge("critic", "polisher")
    builder.add_edge("polisher", END)
    return builder
