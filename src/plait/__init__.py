"""plait: multi-agent orchestration patterns as resumable LangGraph state machines.

The prebuilt graph factories live in ``plait.graphs``; the scripted model and loopback server
for tests in ``plait.testing``. Names load on first use, so ``plait --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ loads, for type checkers; `X as X` marks a re-export
    from plait.errors import PlaitError as PlaitError
    from plait.models.context import PlaitContext as PlaitContext
    from plait.nodes.agent import Reply as Reply
    from plait.nodes.agent import agent_node as agent_node
    from plait.nodes.agent import ask as ask
    from plait.nodes.agent import ask_for as ask_for
    from plait.nodes.agent import user_prompt as user_prompt
    from plait.nodes.kit import node as node
    from plait.nodes.kit import record_failure as record_failure
    from plait.nodes.kit import say as say
    from plait.runner import Outcome as Outcome
    from plait.runner import RunFailed as RunFailed
    from plait.runner import resume as resume
    from plait.runner import run as run
    from plait.settings import RunSettings as RunSettings
    from plait.state.common import CommonState as CommonState
    from plait.state.common import merge_by_key as merge_by_key
    from plait.state.log import envelope as envelope

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
    "node": "plait.nodes.kit",
    "record_failure": "plait.nodes.kit",
    "say": "plait.nodes.kit",
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
