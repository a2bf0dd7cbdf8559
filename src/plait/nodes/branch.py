"""Fan-out branches: the keys their outputs merge by, and the update each one returns.

A branch (one ``Send``) writes under its own key, so that a branch re-run on resume replaces
its output. Where the pattern allows partial results, a failed branch records its error under
that key instead of stopping the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

from plait.errors import PlaitError
from plait.nodes.agent import Reply
from plait.state.log import envelope
from plait.state.usage import per_branch

# What a branch does when its agent fails: stop the run (resume re-runs only that branch), or
# record the failure and let the rest go on.
BRANCH_ERROR_MODES = ("fail", "continue")


def unique_ids(ids: Iterable[str], *, taken: Iterable[str] = ()) -> list[str]:
    """Make planned ids fit to key branch outputs by: no two alike, none in ``taken``.

    A blank id becomes ``s<n>`` and a repeated one ``<id>-<n>``, ``n`` being its place in
    the plan counting from 1; other ids are kept as written, stripped.
    """
    seen = set(taken)
    unique = []
    for index, raw in enumerate(ids, 1):
        key = raw.strip() or f"s{index}"
        if key in seen:
            key = f"{key}-{index}"
        seen.add(key)
        unique.append(key)
    return unique


def branch_failure(key: str, sender: str, receiver: str, exc: Exception) -> dict[str, Any]:
    """The update of a branch that failed and lets the run go on.

    Returns:
        The error under ``key`` in ``errors``, and a ``failure`` envelope from ``sender`` to
        ``receiver`` correlated by ``key``.
    """
    return {
        "errors": {key: str(exc)},
        "log": [envelope(sender, receiver, "failure", str(exc), correlation_id=key)],
    }


async def branch_update(
    key: str,
    sender: str,
    receiver: str,
    call: Awaitable[Reply[str]],
    *,
    keep_going: bool,
    output_key: str = "outputs",
) -> dict[str, Any]:
    """Await one branch's agent call and return the branch's update.

    Args:
        key: The branch's key (a subtask id, an item number) in ``output_key`` or ``errors``.
        sender: The agent that answers (the envelope's sender).
        receiver: The node that reads the branch outputs (the envelope's receiver).
        call: The agent call, e.g. ``ask(...)``, not yet awaited.
        keep_going: On a ``PlaitError``, return ``branch_failure`` instead of raising.
        output_key: The state key, merged by key, that the reply is written to.

    Returns:
        The reply under ``key`` in ``output_key``, its usage, and a ``result`` envelope
        correlated by ``key``; or, when the call failed and ``keep_going``, the failure.

    Raises:
        PlaitError: the call failed and not ``keep_going``.
    """
    try:
        reply = await call
    except PlaitError as exc:
        if not keep_going:
            raise
        return branch_failure(key, sender, receiver, exc)
    return {
        output_key: {key: reply.value},
        "usage": per_branch(reply.usage, key),
        "log": [envelope(sender, receiver, "result", reply.value, correlation_id=key)],
    }
