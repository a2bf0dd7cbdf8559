"""Worker pools: one role served by several model endpoints.

A ``ModelPool`` is itself a chat model, so it goes anywhere a model goes (``--model``,
``--model-for ROLE=...``, ``PlaitContext``). Each call is sent to one member, chosen
round-robin, to the least-loaded member, or to the least-loaded member able to serve the
calling role; each member has its own concurrency limit, so a fan-out of 64 workers over two
endpoints with limits 4 and 8 keeps at most 12 requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from plait.errors import ModelSpecError

STRATEGIES = ("round_robin", "least_loaded", "capability")


@dataclass
class PoolMember:
    """One endpoint of a pool.

    Args:
        model: The chat model for this endpoint.
        limit: Most requests in flight to it at once.
        capabilities: Roles it may serve (used by the ``capability`` strategy).
        name: A label for usage and errors.
        structured: The structured-output method pinned for it (``auto``: found by trying).
    """

    model: BaseChatModel
    limit: int = 4
    capabilities: frozenset[str] = field(default_factory=frozenset)
    name: str = ""
    structured: str = "auto"
    in_flight: int = 0
    _gates: dict[int, asyncio.Semaphore] = field(default_factory=dict, repr=False)

    def gate(self) -> asyncio.Semaphore:
        # A semaphore belongs to one event loop; the pool outlives loops (one per CLI command
        # or test), so keep one per running loop.
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._gates:
            self._gates[loop_id] = asyncio.Semaphore(self.limit)
        return self._gates[loop_id]


class ModelPool(BaseChatModel):
    """A chat model that spreads calls over several members.

    Example:
        ``ModelPool(members=[PoolMember(fast, limit=8), PoolMember(slow, limit=2)],
        strategy="least_loaded")``
    """

    strategy: str = "round_robin"
    _members: list[PoolMember] = PrivateAttr(default_factory=list)
    _turn: Iterator[int] = PrivateAttr()  # set in __init__

    def __init__(self, *, members: Sequence[PoolMember], strategy: str = "round_robin") -> None:
        super().__init__(strategy=strategy)
        if strategy not in STRATEGIES:
            raise ModelSpecError(
                f"unknown pool strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        if not members:
            raise ModelSpecError("a model pool needs at least one member")
        for index, member in enumerate(members):
            if member.limit < 1:
                raise ModelSpecError(
                    f"pool member {index} has limit {member.limit}; it must be at least 1"
                )
            member.name = member.name or f"member{index}"
        self._members = list(members)
        self._turn = itertools.cycle(range(len(members)))

    @property
    def _llm_type(self) -> str:
        return "plait-pool"

    @property
    def members(self) -> list[PoolMember]:
        return self._members

    def choose(self, role: str) -> PoolMember:
        """The member the next call for ``role`` goes to (no waiting happens here).

        Raises:
            ModelSpecError: with the ``capability`` strategy, when no member serves ``role``.
        """
        if self.strategy == "round_robin":
            return self._members[next(self._turn)]
        candidates = self._members
        if self.strategy == "capability":
            candidates = [m for m in self._members if role in m.capabilities]
            if not candidates:
                served = sorted({c for m in self._members for c in m.capabilities})
                raise ModelSpecError(
                    f"no pool member serves role {role!r}; members serve {', '.join(served)}"
                )
        # Fewest in flight relative to the member's limit; the first wins ties, so equal
        # members fill in order and a bigger endpoint takes a bigger share.
        return min(candidates, key=lambda m: m.in_flight / m.limit)

    @contextlib.asynccontextmanager
    async def lease(self, role: str) -> AsyncIterator[PoolMember]:
        """Choose a member for one call of ``role`` and hold one of its slots meanwhile.

        plait's call path leases a member and calls it directly, so each member gets its own
        structured-output method, circuit breaker and usage line.
        """
        member = self.choose(role)
        member.in_flight += 1
        try:
            async with member.gate():
                yield member
        finally:
            member.in_flight -= 1

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        metadata = run_manager.metadata if run_manager else {}
        async with self.lease(metadata.get("plait_role", "")) as member:
            reply = await member.model.ainvoke(
                messages, stop=stop, config={"metadata": metadata}, **kwargs
            )
        return ChatResult(generations=[ChatGeneration(message=tagged(reply, member.name))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        metadata = run_manager.metadata if run_manager else {}
        member = self.choose(metadata.get("plait_role", ""))
        reply = member.model.invoke(messages, stop=stop, config={"metadata": metadata}, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=tagged(reply, member.name))])


def tagged(reply: AIMessage, member: str) -> AIMessage:
    """``reply`` with its model name marked ``NAME@member``: usage is counted per model name,
    so it names the member that served the call.
    """
    model_name = (reply.response_metadata or {}).get("model_name", "model")
    meta = {**(reply.response_metadata or {}), "model_name": f"{model_name}@{member}"}
    return reply.model_copy(update={"response_metadata": meta})


def load_pool(path: str, profiles: Mapping[str, Mapping[str, Any]] | None = None) -> ModelPool:
    """Build a pool from a JSON file.

    The file: ``{"strategy": "least_loaded", "members": [{"model": "openai:gpt-4o-mini",
    "base_url": "http://gpu1:8000/v1", "limit": 8, "capabilities": ["coder"], "name": "gpu1"}]}``;
    a member's ``model`` may name a profile from ``plait.toml``.

    Raises:
        ModelSpecError: the file is missing, not JSON, or describes a bad pool.
    """
    try:
        spec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelSpecError(
            f"pool file {path!r} does not exist (and plait.toml names no pool {path!r})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"cannot read pool file {path!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ModelSpecError(f"pool file {path!r} is not JSON: {exc.msg}") from None
    return pool_from_dict(spec, f"pool file {path!r}", profiles)


def pool_from_dict(
    spec: Any, label: str, profiles: Mapping[str, Mapping[str, Any]] | None = None
) -> ModelPool:
    """Build a pool from its description (a pool file's JSON or a ``[pools.NAME]`` table).

    Raises:
        ModelSpecError: the description is malformed; ``label`` says which pool.
    """
    from plait.models.spec import load_chat_model
    from plait.secrets import check_base_url

    profiles = profiles or {}
    try:
        members = []
        for index, item in enumerate(spec["members"]):
            if "model" not in item:
                raise ModelSpecError(f"{label}: member {index} has no 'model'")
            if str(item["model"]).startswith("pool:"):
                raise ModelSpecError(f"{label}: member {index} is itself a pool; pools do not nest")
            if item.get("base_url") is not None:
                check_base_url(
                    str(item["base_url"]),
                    f"{label}: member {index} base_url",
                    "its provider's variable (OPENAI_API_KEY) or a profile's api_key_env",
                )
            members.append(
                PoolMember(
                    model=load_chat_model(
                        item["model"], base_url=item.get("base_url"), profiles=profiles
                    ),
                    limit=int(item.get("limit", profiles.get(item["model"], {}).get("limit", 4))),
                    capabilities=frozenset(item.get("capabilities", ())),
                    name=item.get("name", ""),
                    structured=profiles.get(item["model"], {}).get("structured", "auto"),
                )
            )
        return ModelPool(members=members, strategy=spec.get("strategy", "round_robin"))
    except ModelSpecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelSpecError(
            f'{label} must hold {{"strategy": ..., "members": [{{"model": SPEC, '
            f'"base_url"?, "limit"?, "capabilities"?, "name"?}}]}} ({exc})'
        ) from None
