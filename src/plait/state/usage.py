"""Usage accounting: what each agent cost, summed across parallel branches by a reducer."""

from __future__ import annotations

from collections.abc import Mapping

from typing_extensions import TypedDict


class AgentUsage(TypedDict, total=False):
    """What one agent consumed. ``models`` counts calls per model name."""

    calls: int
    input_tokens: int
    output_tokens: int
    seconds: float
    cost: float
    models: dict[str, int]


_NUMBERS = ("calls", "input_tokens", "output_tokens", "seconds", "cost")


def _add_one(left: AgentUsage, right: AgentUsage) -> AgentUsage:
    merged: AgentUsage = {k: left.get(k, 0) + right.get(k, 0) for k in _NUMBERS}  # type: ignore[misc]
    models = dict(left.get("models", {}))
    for name, calls in right.get("models", {}).items():
        models[name] = models.get(name, 0) + calls
    merged["models"] = models
    return merged


def add_usage(
    left: Mapping[str, AgentUsage] | None, right: Mapping[str, AgentUsage] | None
) -> dict[str, AgentUsage]:
    """Sum usage per agent; a pure reducer, so branch order does not matter."""
    merged = dict(left or {})
    for agent, usage in (right or {}).items():
        merged[agent] = _add_one(merged[agent], usage) if agent in merged else _add_one({}, usage)
    return merged


def total_tokens(usage: Mapping[str, AgentUsage] | None) -> int:
    """Input plus output tokens over all agents."""
    return sum(u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in (usage or {}).values())
