"""Run and resume graphs: the one place the CLI and Python users share.

``run`` starts a thread, records what it was started with in the thread index, and streams the
graph to completion with checkpoints after every step. ``resume`` rebuilds the same graph with
the same settings (or overrides) and continues from the last checkpoint, so work that finished
before a failure, Ctrl-C or SIGKILL is not done, or paid for, again.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait.checkpoints.sqlite import open_database
from plait.errors import ExitCode, PlaitError, ThreadError, UsageError
from plait.graphs.loader import build_graph, is_reference
from plait.models.context import PlaitContext
from plait.models.resilience import BudgetExceeded
from plait.settings import RunSettings, seed_budget
from plait.state.usage import add_usage, total_tokens

# Every plait loop has its own stopping rule; this only guards authored graphs that loop forever.
RECURSION_LIMIT = 10_000

EventHandler = Callable[[str, dict[str, Any]], None]


@dataclass
class Outcome:
    """How a run ended. ``values`` is the final state; the rest are its headline keys."""

    thread_id: str
    graph: str
    status: str
    result: str | None
    usage: dict[str, Any]
    errors: dict[str, str]
    values: dict[str, Any]
    stop_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The documented ``--json`` document (``values`` left out: it can be large)."""
        data = asdict(self)
        del data["values"]
        data["tokens"] = total_tokens(self.usage)
        return data


class RunFailed(PlaitError):
    """The run stopped on an error; its state is saved and ``resume`` continues it."""

    def __init__(self, thread_id: str, message: str) -> None:
        self.thread_id = thread_id
        super().__init__(message)


class BudgetStopped(RunFailed):
    """A token, cost or call budget was reached; ``resume`` with a larger budget continues."""

    exit_code = ExitCode.BUDGET


async def run(
    graph: str,
    task: str,
    *,
    settings: RunSettings | None = None,
    db: str | os.PathLike[str] | None = None,
    thread_id: str | None = None,
    on_event: EventHandler | None = None,
    context: PlaitContext | None = None,
    input: str | None = None,
) -> Outcome:
    """Start a new thread of ``graph`` on ``task`` and run it to the end.

    Args:
        graph: A prebuilt graph's name, ``path/file.py:attr`` or ``package.module:attr``.
        task: The input.
        settings: Models and ``--set`` options (default: the demo model, no options).
        db: The database path (default: ``PLAIT_DB``, then the per-user file).
        thread_id: A name for the thread (default: a new random id).
        on_event: Called with progress events: ``("start", {...})``, ``("node", {...})``.
        context: Models as objects (e.g. a configured chat model, or a scripted one in
            tests); replaces the models in ``settings``. Not stored: pass it to ``resume`` too.
        input: Extra input text for the graph's ``input`` key (items, a document).

    Raises:
        UsageError: empty task, bad graph reference, option or model spec.
        ThreadError: ``thread_id`` is taken.
        RunFailed: the graph failed; the thread can be resumed.
    """
    if not task.strip():
        raise UsageError("the task is empty; say what the graph should work on")
    settings = settings or RunSettings()
    if context is None:
        settings.check_models()
        context = settings.context()
    ref = _stable_reference(graph)
    async with open_database(db) as database:
        app = build_graph(ref, settings.options, database.saver)
        thread_id = thread_id or uuid.uuid4().hex[:12]
        if await database.threads.get(thread_id):
            raise ThreadError(f"thread {thread_id!r} already exists; use `plait resume {thread_id}`")
        await database.threads.create(thread_id, ref, task, asdict(settings))
        start = {"task": task} if input is None else {"task": task, "input": input}
        return await _drive(app, database, thread_id, ref, start, context, settings, on_event)


async def resume(
    thread_id: str,
    *,
    db: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    on_event: EventHandler | None = None,
    context: PlaitContext | None = None,
) -> Outcome:
    """Continue a thread from its last checkpoint with the settings it was started with.

    ``overrides`` changes stored settings by name (``model``, ``model_for``, ``base_url``,
    ``fallbacks``, ``max_tokens``, ``max_cost``, ``max_calls``) and is stored with them;
    ``context`` supplies model objects, as for ``run``.

    Raises:
        ThreadError: unknown thread, or a thread that already finished.
        RunFailed: as for ``run``.
    """
    async with open_database(db) as database:
        record = await database.threads.get(thread_id)
        if record is None:
            raise ThreadError(f"no thread {thread_id!r} in {database.path}; `plait threads` lists them")
        if record.status == "done":
            raise ThreadError(f"thread {thread_id!r} already finished; nothing to resume")
        settings = RunSettings.from_stored(record.settings).override(**(overrides or {}))
        if context is None:
            settings.check_models()
            context = settings.context()
        app = build_graph(record.graph, settings.options, database.saver)
        snapshot = await app.aget_state(_config(thread_id, settings))
        if snapshot.values and not snapshot.next:
            await database.threads.update(thread_id, status="done")
            raise ThreadError(f"thread {thread_id!r} already finished; nothing to resume")
        # A thread killed before its first checkpoint starts again from its input.
        start = None if snapshot.next else {"task": record.task}
        await database.threads.update(thread_id, status="running", error=None, settings=asdict(settings))
        return await _drive(app, database, thread_id, record.graph, start, context, settings,
                            on_event, usage=snapshot.values.get("usage", {}))


async def _drive(app, database, thread_id, ref, start, context, settings, on_event, usage=None):
    emit = on_event or (lambda kind, data: None)
    config = _config(thread_id, settings)
    emit("start", {"thread_id": thread_id, "graph": ref, "resumed": start is None})
    usage = usage or {}
    seed_budget(context, usage)
    try:
        async for mode, chunk in app.astream(
            start, config, context=context, stream_mode=["tasks", "updates"],
            durability="sync",
        ):
            if mode == "tasks" and "input" in chunk:
                emit("node", {"name": chunk["name"], "phase": "start", "tokens": total_tokens(usage)})
            elif mode == "updates":
                for name, update in chunk.items():
                    update = update if isinstance(update, dict) else {}
                    usage = add_usage(usage, update.get("usage"))
                    emit("node", {"name": name, "phase": "end", "tokens": total_tokens(usage),
                                  "iteration": update.get("iteration")})
    except asyncio.CancelledError:
        await database.threads.update(thread_id, status="interrupted")
        raise
    except BudgetExceeded as exc:
        await database.threads.update(thread_id, status="budget", error=str(exc),
                                      tokens=context.budget.tokens)
        raise BudgetStopped(thread_id, str(exc)) from exc
    except Exception as exc:
        message = str(exc) if isinstance(exc, PlaitError) else f"{type(exc).__name__}: {exc}"
        await database.threads.update(thread_id, status="failed", error=message)
        raise RunFailed(thread_id, message) from exc
    snapshot = await app.aget_state(config)
    values = dict(snapshot.values)
    status = "waiting" if snapshot.next else "done"
    await database.threads.update(thread_id, status=status, tokens=total_tokens(values.get("usage")))
    return Outcome(
        thread_id=thread_id,
        graph=ref,
        status=status,
        result=values.get("result"),
        usage=values.get("usage", {}),
        errors=values.get("errors", {}),
        values=values,
        stop_reason=values.get("stop_reason"),
    )


def _config(thread_id: str, settings: RunSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": RECURSION_LIMIT,
    }
    config["max_concurrency"] = settings.option("max_concurrency")
    return config


def _stable_reference(graph: str) -> str:
    # A file reference is stored absolute, so `plait resume` works from any directory.
    if is_reference(graph):
        where, _, attr = graph.rpartition(":")
        if where.endswith(".py") and Path(where).is_file():
            return f"{Path(where).resolve()}:{attr}"
    return graph
