"""How each side runs a workflow, so every measurement runs them the same way.

plait: ``plait.run`` (the runner the CLI uses: thread index, SQLite saver, streaming with
``durability="sync"``), or, to isolate one cost, the runner's own streaming loop on a graph
compiled with or without plait's saver. Plain LangGraph: ``graph.invoke`` as the docs show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import baselines
from bench.core import fresh_id
from plait import PlaitContext, RunSettings, run
from plait.graphs.loader import build_graph
from plait.runner import RECURSION_LIMIT
from plait.settings import RUN_DEFAULTS

MAX_CONCURRENCY = RUN_DEFAULTS["max_concurrency"]  # what `plait run` uses


def orchestrator_options(n: int) -> dict[str, Any]:
    return {"min_subtasks": n, "max_subtasks": n}


async def run_plait(
    graph: str,
    task: str,
    *,
    db: Path,
    options: dict[str, Any] | None = None,
    model: Any = None,
    base_url: str | None = None,
) -> Any:
    """One thread through ``plait.run``: an in-process model object, or ``openai:`` at a URL."""
    if base_url is not None:
        settings = RunSettings(model="openai:bench", base_url=base_url, options=options or {})
        return await run(graph, task, settings=settings, db=db)
    settings = RunSettings(options=options or {})
    return await run(graph, task, settings=settings, db=db, context=PlaitContext(model=model))


def compile_plait(graph: str, options: dict[str, Any] | None, saver: Any) -> Any:
    return build_graph(graph, options or {}, saver)


async def stream_plait(
    app: Any, task: str, model: Any, *, durable: bool, max_concurrency: int = MAX_CONCURRENCY
) -> dict[str, Any]:
    """The runner's streaming loop (same stream modes and durability) on a compiled graph."""
    config = {
        "configurable": {"thread_id": fresh_id()},
        "recursion_limit": RECURSION_LIMIT,
        "max_concurrency": max_concurrency,
    }
    extra = {"durability": "sync"} if durable else {}
    last: dict[str, Any] = {}
    async for _mode, chunk in app.astream(
        {"task": task},
        config,
        context=PlaitContext(model=model),
        stream_mode=["tasks", "updates"],
        **extra,
    ):
        last = chunk
    return last


def compile_plain(kind: str, model: Any, saver: Any = None, **options: Any) -> Any:
    return baselines.builder_for(kind, model, **options).compile(checkpointer=saver)


def invoke_plain(app: Any, task: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": fresh_id()}, "recursion_limit": 10_000}
    return app.invoke(baselines.start(task), config)


def run_plain(kind: str, task: str, model: Any, *, db: Path | None, **options: Any) -> dict:
    """A whole plain run, opening its saver as the docs do (or with no checkpointer)."""
    if db is None:
        return invoke_plain(compile_plain(kind, model, None, **options), task)
    with baselines.sqlite_saver(str(db)) as saver:
        return invoke_plain(compile_plain(kind, model, saver, **options), task)
