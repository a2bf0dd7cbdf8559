"""Pausing a run for a person, with LangGraph's ``interrupt``.

A node that calls ``ask_human`` stops the run; the thread waits (exit code 3) until
``plait resume ID --approve``, ``--reject --feedback TEXT`` or ``--answer TEXT`` continues it,
and the call then returns the person's decision. The node runs again from its start on
resume, so call ``ask_human`` before any model call in the node, not after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.types import interrupt


@dataclass(frozen=True)
class Decision:
    """A person's answer to a paused run."""

    approved: bool | None = None
    feedback: str | None = None
    answer: str | None = None

    def value(self) -> dict[str, Any]:
        return {"approved": self.approved, "feedback": self.feedback, "answer": self.answer}


def ask_human(question: str, **details: Any) -> dict[str, Any]:
    """Pause the run with ``question`` (and ``details`` to show); return the decision.

    Returns:
        ``{"approved": bool | None, "feedback": str | None, "answer": str | None}``.

    Example:
        ``reply = ask_human("Which region should the service run in?")["answer"]``
    """
    # What the run is resumed with: the runner sends a Decision's value().
    decision: dict[str, Any] = interrupt({"question": question, **details})
    return decision
