"""A chat model whose replies are written in advance, per role, and checked to be used up."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import PrivateAttr

from plait.models.demo import counted_result
from plait.models.demo import tokens as tokens  # still importable here, where tests took it

Entry = str | BaseException | Callable[[list[BaseMessage]], str]
"""One scripted call: reply text, an exception to raise, or a function of the messages."""

DEFAULT_ROLE = "assistant"


class ScriptError(AssertionError):
    """A script was called more, or less, than it was written for.

    It is an ``AssertionError`` so that pytest reports it as a failed test, not as an error
    in the code under test.
    """


def unconsumed_report(scripted: Mapping[str, int], made: Mapping[str, int]) -> list[str]:
    """One line per role that was called fewer times than scripted."""
    return [
        f"role {role!r}: {count} call(s) scripted, {made.get(role, 0)} made"
        for role, count in scripted.items()
        if made.get(role, 0) < count
    ]


def raise_if_failed(violations: Sequence[str], unconsumed: Sequence[str]) -> None:
    """Raise one ``ScriptError`` naming every violation and every unconsumed role."""
    lines = [f"unexpected call: {v}" for v in violations]
    lines += [f"not consumed: {u}" for u in unconsumed]
    if lines:
        raise ScriptError("script not followed:\n  " + "\n  ".join(lines))


class ScriptedChatModel(BaseChatModel):
    """A LangChain chat model that answers each role from a script, in order.

    plait tells the model which role a call is for through the run metadata
    (``plait_role``); each call takes that role's next entry. Every call is recorded in
    ``calls`` so a test can assert exactly what context an agent was sent. A call the script
    does not cover raises ``ScriptError`` and is kept in ``violations``, so even when plait
    wraps the error, ``verify()`` still fails the test.

    Args:
        script: For each role, its entries in call order. An entry is the reply text, an
            exception instance to raise, or a callable ``(messages) -> str``.
        latency: Seconds each async call waits (with ``asyncio.sleep``) before answering.

    Example:
        ``with ScriptedChatModel({"writer": ["draft"], "reviewer": ["ok"]}) as model:``
        ``    await graph.ainvoke({"task": "t"}, context=PlaitContext(model=model))``

    """

    latency: float = 0.0
    _script: dict[str, list[Entry]] = PrivateAttr(default_factory=dict)
    _queues: dict[str, deque[Entry]] = PrivateAttr(default_factory=dict)
    _calls: dict[str, list[list[BaseMessage]]] = PrivateAttr(default_factory=dict)
    _violations: list[str] = PrivateAttr(default_factory=list)
    # A thread lock, not an asyncio one: sync callers may use threads, and nothing awaits
    # while holding it, so it never blocks the event loop for long.
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self, script: Mapping[str, Sequence[Entry]], *, latency: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(latency=latency, **kwargs)
        self._script = {role: list(entries) for role, entries in script.items()}
        self._queues = {role: deque(entries) for role, entries in script.items()}

    @property
    def _llm_type(self) -> str:
        return "plait-scripted"

    @property
    def calls(self) -> dict[str, list[list[BaseMessage]]]:
        """The messages of every call made, per role, in call order."""
        return self._calls

    @property
    def violations(self) -> list[str]:
        """A description of every call the script did not cover."""
        return self._violations

    def count(self, role: str) -> int:
        """How many calls were made for ``role`` (including ones the script did not cover)."""
        return len(self._calls.get(role, []))

    def verify(self) -> None:
        """Check the script was followed exactly.

        Raises:
            ScriptError: if any call was not covered by the script, or any role has entries
                left, naming each role with its scripted and made call counts.

        """
        with self._lock:
            made = {role: len(calls) for role, calls in self._calls.items()}
            scripted = {role: len(entries) for role, entries in self._script.items()}
            violations = list(self._violations)
        raise_if_failed(violations, unconsumed_report(scripted, made))

    def __enter__(self) -> ScriptedChatModel:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # On an exception the test has already failed; a second error would hide the first.
        if exc_type is None:
            self.verify()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages, self._take(messages, run_manager))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Take the entry before sleeping, so concurrent calls consume entries in call order.
        entry = self._take(messages, run_manager)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return self._answer(messages, entry)

    def _take(self, messages: list[BaseMessage], run_manager: Any) -> Entry:
        role = (run_manager.metadata if run_manager else {}).get("plait_role", DEFAULT_ROLE)
        with self._lock:
            self._calls.setdefault(role, []).append(list(messages))
            queue = self._queues.get(role)
            if queue:
                return queue.popleft()
            if queue is None:
                problem = f"role {role!r} is not in the script"
            else:
                problem = f"role {role!r} called more than its {len(self._script[role])} entries"
            self._violations.append(problem)
        raise ScriptError(problem)

    def _answer(self, messages: list[BaseMessage], entry: Entry) -> ChatResult:
        if isinstance(entry, BaseException):
            raise entry
        text = entry if isinstance(entry, str) else entry(messages)
        return counted_result(messages, text, "scripted")
