"""The node kit: a node's bookkeeping done for it.

A function wrapped with ``@node`` gets a ledger for the length of its run. Every model call it
makes through ``ask`` or ``ask_for`` files its usage there by itself, and ``say`` files a log
envelope; the wrapper merges both into the update the node returns. A node therefore returns
only what it produced (``{"outputs": {...}}``), and one that forgets nothing cannot make a
budget under-count after a resume, because budgets are rebuilt from the state's usage.

A node that returns a ``Command`` gets the bookkeeping merged into the command's update.
For a fan-out branch, ``@node(branch=key_of)`` files the usage under the branch's key as
well, and ``on_error=record_failure(receiver)`` turns a failure of the branch into a recorded
one (its error under the key in ``errors``, the usage it had already spent, a ``failure``
envelope) so the rest of the fan-out goes on; without it, the failure stops the run and a
resume re-runs only that branch.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar, overload

from langgraph.types import Command

from plait.errors import PlaitError
from plait.state.log import Envelope, envelope
from plait.state.usage import AgentUsage, add_usage, per_branch

Update = dict[str, Any]
P = TypeVar("P")
P_in = TypeVar("P_in", contravariant=True)
NodeFn = Callable[[P, Any], Awaitable[Update | Command[Any] | None]]
Failure = Callable[[str, Exception], Update]


@dataclass
class Ledger:
    """What one run of a node spent and said, and the input it ran on."""

    branch: str | None = None
    usage: dict[str, AgentUsage] = field(default_factory=dict)
    log: list[Envelope] = field(default_factory=list)
    input: Any = None

    def update(self, produced: Mapping[str, Any]) -> Update:
        """``produced`` with this ledger's usage and envelopes merged in."""
        usage = per_branch(self.usage, self.branch) if self.branch else self.usage
        merged = dict(produced)
        if usage or "usage" in merged:
            merged["usage"] = add_usage(usage, merged.get("usage"))
        if self.log or "log" in merged:
            merged["log"] = [*self.log, *merged.get("log", [])]
        return merged


_current: ContextVar[Ledger | None] = ContextVar("plait_ledger", default=None)


def book(usage: Mapping[str, AgentUsage]) -> None:
    """File a call's usage in the running node's ledger (no-op outside a ``@node``)."""
    ledger = _current.get()
    if ledger is not None:
        ledger.usage = add_usage(ledger.usage, usage)


def say(sender: str, receiver: str, kind: str, content: str, *, correlation_id: str = "") -> None:
    """File a log envelope from ``sender`` to ``receiver`` in the running node's ledger.

    Raises:
        RuntimeError: called outside a ``@node``: the envelope would be lost.
    """
    ledger = _current.get()
    if ledger is None:
        raise RuntimeError("say() files an envelope for a @node; call it inside one")
    ledger.log.append(envelope(sender, receiver, kind, content, correlation_id=correlation_id))


def record_failure(receiver: str, *, sender: str | Callable[[Any], str] | None = None) -> Failure:
    """An ``on_error`` policy: record the failed branch and let the run go on.

    The branch's error goes under its key in ``errors``, and a ``failure`` envelope from
    ``sender`` to ``receiver``, correlated by the key. ``sender`` is a name, or a function of
    the branch's input (``lambda payload: payload["subtask"]["role"]``); default: the key.
    """

    def failed(key: str, exc: Exception) -> Update:
        ledger = _current.get()
        name = sender(ledger.input if ledger else None) if callable(sender) else sender
        return {
            "errors": {key: str(exc)},
            "log": [envelope(name or key, receiver, "failure", str(exc), correlation_id=key)],
        }

    return failed


class Node(Protocol[P_in]):
    """A node made by ``@node``: LangGraph calls it with the state (or a ``Send`` payload) and
    passes ``runtime`` by name.
    """

    __name__: str

    def __call__(self, state: P_in, runtime: Any = None) -> Awaitable[Any]: ...


@overload
def node(fn: NodeFn[P]) -> Node[P]: ...


@overload
def node(
    *, branch: Callable[[P], str] | None = None, on_error: Failure | None = None
) -> Callable[[NodeFn[P]], Node[P]]: ...


def node(
    fn: NodeFn[P] | None = None,
    *,
    branch: Callable[[P], str] | None = None,
    on_error: Failure | None = None,
) -> Node[P] | Callable[[NodeFn[P]], Node[P]]:
    """Make ``fn`` a graph node whose usage and log are booked for it.

    Args:
        fn: ``async def fn(state_or_payload, runtime) -> update`` (or a ``Command``).
        branch: For a fan-out branch: the key its outputs merge by (a subtask id, an item
            number), read from its input; usage is filed under it too.
        on_error: What a failed branch returns instead of raising (``record_failure(...)``);
            only plait's own errors (a model that failed for good, a reply that never
            validated) are caught: a budget stop or a cancellation always stops the run.

    Example:
        ``@node`` then ``async def critic(state, runtime): return {"critique": (await ask(...)).value}``
    """

    def wrap(inner: NodeFn[P]) -> Node[P]:
        @functools.wraps(inner)
        async def run(state: P, runtime: Any = None) -> Any:
            ledger = Ledger(branch=branch(state) if branch else None, input=state)
            token = _current.set(ledger)
            try:
                produced = await inner(state, runtime) or {}
                if isinstance(produced, Command):  # a node that also says where to go next
                    return replace(produced, update=ledger.update(produced.update or {}))
            except PlaitError as exc:
                if on_error is None or ledger.branch is None:
                    raise
                produced = on_error(ledger.branch, exc)
            finally:
                _current.reset(token)
            return ledger.update(produced)

        return run

    return wrap(fn) if fn is not None else wrap
