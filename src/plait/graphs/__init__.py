"""The prebuilt graphs, one module per pattern; each factory returns an uncompiled StateGraph.

Factories load on first use so that importing plait (and ``plait --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ loads, for type checkers; `X as X` marks a re-export
    from plait.graphs.auction import create_auction_graph as create_auction_graph
    from plait.graphs.blackboard import create_blackboard_graph as create_blackboard_graph
    from plait.graphs.consensus import create_consensus_graph as create_consensus_graph
    from plait.graphs.dag import create_dag_graph as create_dag_graph
    from plait.graphs.debate import create_debate_graph as create_debate_graph
    from plait.graphs.map_reduce import create_map_reduce_graph as create_map_reduce_graph
    from plait.graphs.orchestrator import create_orchestrator_graph as create_orchestrator_graph
    from plait.graphs.perspectives import create_perspectives_graph as create_perspectives_graph
    from plait.graphs.pipeline import create_pipeline_graph as create_pipeline_graph
    from plait.graphs.review import create_review_graph as create_review_graph
    from plait.graphs.router import create_router_graph as create_router_graph
    from plait.graphs.supervisor import create_supervisor_graph as create_supervisor_graph
    from plait.graphs.swarm import create_swarm_graph as create_swarm_graph

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
