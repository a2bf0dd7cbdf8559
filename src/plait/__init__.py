"""plait: multi-agent orchestration patterns as resumable LangGraph state machines.

The prebuilt graph factories live in ``plait.graphs``; the scripted model and loopback server
for tests in ``plait.testing``. Names load on first use, so ``plait --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CommonState": "plait.state.common",
    "merge_by_key": "plait.state.common",
    "envelope": "plait.state.log",
    "PlaitContext": "plait.models.context",
    "PlaitError": "plait.errors",
    "Reply": "plait.nodes.agent",
    "agent_node": "plait.nodes.agent",
    "ask": "plait.nodes.agent",
    "ask_for": "plait.nodes.agent",
    "user_prompt": "plait.nodes.agent",
    "Outcome": "plait.runner",
    "RunFailed": "plait.runner",
    "RunSettings": "plait.settings",
    "resume": "plait.runner",
    "run": "plait.runner",
}

__all__ = tuple(sorted(_EXPORTS))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plait' has no attribute {name!r}")
