"""The prebuilt graphs, one module per pattern; each factory returns an uncompiled StateGraph.

Factories load on first use so that importing plait (and ``plait --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_FACTORIES = {
    "create_review_graph": "plait.graphs.review",
    "create_orchestrator_graph": "plait.graphs.orchestrator",
    "create_pipeline_graph": "plait.graphs.pipeline",
    "create_blackboard_graph": "plait.graphs.blackboard",
    "create_auction_graph": "plait.graphs.auction",
    "create_supervisor_graph": "plait.graphs.supervisor",
    "create_router_graph": "plait.graphs.router",
    "create_swarm_graph": "plait.graphs.swarm",
    "create_debate_graph": "plait.graphs.debate",
    "create_perspectives_graph": "plait.graphs.perspectives",
    "create_consensus_graph": "plait.graphs.consensus",
    "create_dag_graph": "plait.graphs.dag",
    "create_map_reduce_graph": "plait.graphs.map_reduce",
}

__all__ = tuple(_FACTORIES)


def __getattr__(name: str) -> Any:
    if name in _FACTORIES:
        return getattr(importlib.import_module(_FACTORIES[name]), name)
    raise AttributeError(f"module 'plait.graphs' has no attribute {name!r}")
