"""Usage accounting: what each agent cost, summed across parallel branches by a reducer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

from typing_extensions import TypedDict


class AgentUsage(TypedDict, total=False):
    """What one agent consumed. ``models`` counts calls per model name; ``branches`` splits
    the numbers by fan-out branch (subtask id, item number) for agents that run as branches.
    """

    calls: int
    input_tokens: int
    output_tokens: int
    seconds: float
    cost: float
    models: dict[str, int]
    branches: dict[str, dict[str, float]]


_Number = Literal["calls", "input_tokens", "output_tokens", "seconds", "cost"]
_NUMBERS: tuple[_Number, ...] = ("calls", "input_tokens", "output_tokens", "seconds", "cost")

_N = TypeVar("_N", int, float)


def _sum(left: Mapping[str, _N], right: Mapping[str, _N]) -> dict[str, _N]:
    return {k: left.get(k, 0) + right.get(k, 0) for k in {*left, *right}}


def _add_one(left: AgentUsage, right: AgentUsage) -> AgentUsage:
    merged: AgentUsage = {
        "calls": left.get("calls", 0) + right.get("calls", 0),
        "input_tokens": left.get("input_tokens", 0) + right.get("input_tokens", 0),
        "output_tokens": left.get("output_tokens", 0) + right.get("output_tokens", 0),
        "seconds": left.get("seconds", 0) + right.get("seconds", 0),
        "cost": left.get("cost", 0) + right.get("cost", 0),
    }
    merged["models"] = _sum(left.get("models", {}), right.get("models", {}))
    branches = dict(left.get("branches", {}))
    for key, numbers in right.get("branches", {}).items():
        branches[key] = _sum(branches.get(key, {}), numbers)
    if branches:
        merged["branches"] = branches
    return merged


def per_branch(usage: Mapping[str, AgentUsage], key: str) -> dict[str, AgentUsage]:
    """``usage`` with each agent's numbers also filed under branch ``key``."""
    return {
        agent: {**u, "branches": {key: {n: u.get(n, 0) for n in _NUMBERS if n != "seconds"}}}
        for agent, u in usage.items()
    }


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
