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
}

__all__ = tuple(_FACTORIES)


def __getattr__(name: str) -> Any:
    if name in _FACTORIES:
        return getattr(importlib.import_module(_FACTORIES[name]), name)
    raise AttributeError(f"module 'plait.graphs' has no attribute {name!r}")
