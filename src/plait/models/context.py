"""The run context: which model serves which role, and the run-wide fault and budget state.

Passed at invoke time and never checkpointed. One context object serves every branch of a
run, so the circuit breakers and the budget it holds are shared across a fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait.models.resilience import Budget, CallPolicy, CircuitBreaker

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel, LanguageModelInput
    from langchain_core.runnables import Runnable
    from pydantic import BaseModel


@dataclass(frozen=True)
class Endpoint:
    """One concrete model a call goes to: a pool resolved to its member.

    Args:
        model: The chat model client.
        member: The pool member's label, or None outside a pool.
        structured: The structured-output method pinned for it, or ``auto``.
    """

    model: BaseChatModel
    member: str | None
    structured: str


@dataclass
class PlaitContext:
    """What a run needs that is not state.

    Args:
        model: The default model for every role, e.g. ``"demo"``, ``"openai:gpt-4o-mini"``,
            or a LangChain chat model instance.
        model_for: Per-role overrides, keyed by role name (``"planner"``, ``"reviewer"``...).
        base_url: The OpenAI-compatible endpoint for ``openai:`` specs.
        fallbacks: Models tried in order when a role's model keeps failing.
        policy: Retries, backoff and the per-call timeout.
        timeout_for: Per-role call timeouts in seconds, overriding ``policy.timeout``.
        budget: Token, cost and call limits for the whole thread.
        breaker: The template for each endpoint's circuit breaker (threshold, cooldown).
        models: Named model profiles (``[models.NAME]`` in plait.toml); a spec may name one.
        pools: Named worker pools (``[pools.NAME]``), for ``pool:NAME``.
        structured: The structured-output method of models whose profile pins none.
        methods: The structured-output method each endpoint accepted, by endpoint; filled
            in as the run finds out, and seeded from the thread on resume.
        prices: USD per million tokens ``[input, output]`` by model name, over the defaults.
        on_call: Awaited before each model request with 1, and with -1 when the endpoint
            refused it (an HTTP error: not paid); the runner counts them in the thread.
        on_notice: Called once per distinct notice for the user (a refused structured-output
            method, a model with no known price); the CLI prints these on stderr.

    Example:
        ``await graph.ainvoke({"task": "..."}, context=PlaitContext(model="demo"))``
    """

    model: str | BaseChatModel = "demo"
    model_for: Mapping[str, str | BaseChatModel] = field(default_factory=dict)
    base_url: str | None = None
    fallbacks: Sequence[str | BaseChatModel] = ()
    policy: CallPolicy = field(default_factory=CallPolicy)
    timeout_for: Mapping[str, float] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    structured: str = "auto"
    methods: dict[str, str] = field(default_factory=dict)
    prices: Mapping[str, Sequence[float]] = field(default_factory=dict)
    on_call: Callable[[int], Awaitable[None]] | None = field(default=None, repr=False)
    on_notice: Callable[[str], None] | None = field(default=None, repr=False)
    _noticed: set[str] = field(default_factory=set, repr=False)
    _breakers: dict[int, CircuitBreaker] = field(default_factory=dict, repr=False)
    _pinned: dict[int, str] = field(default_factory=dict, repr=False)
    _gates: dict[int, asyncio.Semaphore] = field(default_factory=dict, repr=False)
    _limits: dict[int, int] = field(default_factory=dict, repr=False)
    _method_locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    _keys: dict[int, str] = field(default_factory=dict, repr=False)
    _loaded: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, BaseChatModel]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    # Models set up for one structured method and schema, kept for the run: building one
    # converts the schema to a tool or response format, which costs more than plait's call.
    bound: dict[tuple[int, str, type[BaseModel]], Runnable[LanguageModelInput, Any]] = field(
        default_factory=dict, repr=False
    )
    retried: set[str] = field(default_factory=set, repr=False)  # fan-outs re-sent this run
    _in_flight: int = field(default=0, repr=False)
    _settled: asyncio.Event | None = field(default=None, repr=False)

    def model_for_role(self, role: str) -> BaseChatModel:
        """The chat model that serves ``role``."""
        return self._load(self.model_for.get(role, self.model))

    def candidates(self, role: str) -> list[BaseChatModel]:
        """The role's model, then each fallback, in the order they are tried."""
        return [self.model_for_role(role), *(self._load(f) for f in self.fallbacks)]

    def policy_for(self, role: str) -> CallPolicy:
        if role in self.timeout_for:
            return CallPolicy(
                self.policy.attempts,
                self.policy.backoff,
                self.policy.max_backoff,
                self.timeout_for[role],
            )
        return self.policy

    def breaker_for(self, model: BaseChatModel) -> CircuitBreaker:
        """The breaker of one endpoint (one model client), shared by all branches."""
        key = id(model)
        if key not in self._breakers:
            self._breakers[key] = CircuitBreaker(self.breaker.threshold, self.breaker.cooldown)
        return self._breakers[key]

    def notice(self, text: str) -> None:
        """Tell the user ``text`` once per run (repeats are dropped)."""
        if text not in self._noticed:
            self._noticed.add(text)
            if self.on_notice is not None:
                self.on_notice(text)

    @contextlib.asynccontextmanager
    async def endpoint(self, model: BaseChatModel, role: str) -> AsyncIterator[Endpoint]:
        """The concrete endpoint for one call to ``model``, holding a slot of its limit.

        A pool leases one member; a profile with a ``limit`` waits for one of its slots.
        """
        from plait.models.pool import ModelPool

        if isinstance(model, ModelPool):
            async with model.lease(role) as member:
                yield Endpoint(member.model, member.name, member.structured)
            return
        pinned = self._pinned.get(id(model), self.structured)
        limit = self._limits.get(id(model))
        if limit is None:
            yield Endpoint(model, None, pinned)
            return
        gate = self._gates.setdefault(id(model), asyncio.Semaphore(limit))
        async with gate:
            yield Endpoint(model, None, pinned)

    def endpoint_key(self, model: BaseChatModel) -> str:
        """The endpoint's name (see ``plait.nodes.calls.endpoint_key``), worked out once."""
        if (key := self._keys.get(id(model))) is None:
            from plait.nodes.calls import endpoint_key

            key = self._keys[id(model)] = endpoint_key(model)
        return key

    def method_lock(self, endpoint: str) -> asyncio.Lock:
        """Held while an endpoint's structured-output method is found, so it is asked once."""
        return self._method_locks.setdefault(endpoint, asyncio.Lock())

    def call_started(self) -> None:
        self._in_flight += 1

    def call_ended(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._settled is not None:
            self._settled.set()

    async def settle(self) -> None:
        """Wait until no other model call of this run is in flight.

        A branch that is about to fail the run waits here first: LangGraph cancels the
        superstep's other tasks when one raises, and a call cancelled in flight is paid for
        but lost. Once they finish, their outputs are checkpointed and resume skips them.
        """
        while self._in_flight > 0:
            if self._settled is None or self._settled.is_set():
                self._settled = asyncio.Event()
            await self._settled.wait()

    def _load(self, choice: str | BaseChatModel) -> BaseChatModel:
        from plait.models.spec import load_chat_model

        if not isinstance(choice, str):
            return choice
        # Every call asks; clients belong to one event loop (a context may serve a run and,
        # under another asyncio.run, its resume), so the answer is kept per loop.
        try:
            loaded = self._loaded.setdefault(asyncio.get_running_loop(), {})
        except RuntimeError:  # outside a run (Python callers): load_chat_model caches
            loaded = {}
        if (model := loaded.get(choice)) is not None:
            return model
        model = loaded[choice] = load_chat_model(
            choice, base_url=self.base_url, profiles=self.models, pools=self.pools
        )
        profile = self.models.get(choice) or {}
        if profile.get("structured"):
            self._pinned[id(model)] = profile["structured"]
        if profile.get("limit"):
            self._limits[id(model)] = int(profile["limit"])
        return model
