"""The keys every pattern's state carries, and the by-key merge that makes resumes idempotent."""

from __future__ import annotations

from typing import Annotated, Any

from typing_extensions import TypedDict

from plait.state.log import Envelope, append_log
from plait.state.usage import AgentUsage, add_usage


def merge_by_key(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Merge two dicts, the right side winning.

    Parallel branches write under their own key (subtask id, perspective name), so a branch
    that re-runs on resume replaces its earlier output instead of adding a second copy.
    """
    if not left:
        return dict(right or {})
    if not right:
        return left
    return {**left, **right}


class CommonState(TypedDict, total=False):
    """Keys shared by every prebuilt graph.

    Attributes:
        task: The input the user gave.
        input: Extra input text (``plait run --input FILE``): items or a document to work on.
        result: The final answer.
        usage: Tokens, calls, cost and seconds per agent, summed across branches.
        errors: Branch failures kept (not raised) where the pattern allows partial results,
            keyed by branch id.
        log: The latest inter-agent messages (up to ``LOG_WINDOW``), as envelopes.
    """

    task: str
    input: str
    result: str
    usage: Annotated[dict[str, AgentUsage], add_usage]
    errors: Annotated[dict[str, str], merge_by_key]
    log: Annotated[list[Envelope], append_log]
