"""Run and resume graphs: the one place the CLI and Python users share.

``run`` starts a thread, records what it was started with in the thread index, and streams the
graph to completion with checkpoints after every step. ``resume`` rebuilds the same graph with
the same settings (or overrides) and continues from the last checkpoint, so work that finished
before a failure, Ctrl-C or SIGKILL is not done, or paid for, again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from langgraph.types import Command

from plait.checkpoints.sqlite import database_error, open_database
from plait.checkpoints.threads import OWNER, ThreadStatus
from plait.errors import DatabaseError, ExitCode, PlaitError, ThreadError, UsageError
from plait.graphs.loader import build_graph, is_reference
from plait.graphs.registry import GRAPHS, check_roles, get_entry
from plait.inputs import (
    MAX_INPUT_BYTES,
    MAX_TASK_BYTES,
    check_text,
    check_thread_id,
    stable_paths,
    stable_reference,
)
from plait.models.context import PlaitContext
from plait.models.resilience import BudgetExceeded
from plait.nodes.human import Decision
from plait.settings import RunSettings, seed_budget
from plait.state.usage import add_usage, total_tokens

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.pregel import Pregel
    from langgraph.types import StateSnapshot

    from plait.checkpoints.sqlite import Database
    from plait.checkpoints.threads import ThreadRecord
    from plait.state.usage import AgentUsage

# Every plait loop has its own stopping rule; this only guards authored graphs that loop forever.
RECURSION_LIMIT = 10_000

EventHandler = Callable[[str, dict[str, Any]], None]

# What a run streams into the graph: its input, a person's answer, or None to go on.
GraphInput = dict[str, str] | Command[Any] | None


@dataclass
class Outcome:
    """How a run ended. ``values`` is the final state; the rest are its headline keys."""

    thread_id: str
    graph: str
    status: ThreadStatus
    result: str | None
    usage: dict[str, Any]
    errors: dict[str, str]
    values: dict[str, Any]
    stop_reason: str | None = None
    waiting: dict[str, Any] | None = None
    fallback_calls: dict[str, int] | None = None  # calls a fallback model served, by spec
    methods: dict[str, str] | None = None  # structured-output method each endpoint accepted

    def as_json(self) -> dict[str, Any]:
        """The documented ``--json`` document (``values`` left out: it can be large)."""
        # asdict would deep-copy the whole final state only to drop it; the rest is small.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "values"}
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

    def __init__(self, thread_id: str, message: str, limit: str) -> None:
        super().__init__(thread_id, message)
        self.limit = limit  # "tokens", "cost" or "calls"


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
        UsageError: empty task, a task or input that is not UTF-8 or over its limit
            (``PLAIT_MAX_TASK_BYTES``, ``PLAIT_MAX_INPUT_BYTES``), bad graph reference, option
            or model spec.
        ThreadError: ``thread_id`` is taken.
        RunFailed: the graph failed; the thread can be resumed.
    """
    if not task.strip():
        raise UsageError("the task is empty; say what the graph should work on")
    check_text("the task", task, MAX_TASK_BYTES)
    if input is not None:
        check_text("the input", input, MAX_INPUT_BYTES)
    if input is not None and not is_reference(graph) and not get_entry(graph).reads_input:
        takes = ", ".join(name for name, entry in GRAPHS.items() if entry.reads_input)
        raise UsageError(
            f"graph {graph!r} does not read --input (graphs that do: {takes}); "
            "put what it needs in the task"
        )
    settings = stable_paths(settings or RunSettings())
    if context is None:
        settings.check_models()
        context = settings.context()
    ref = stable_reference(graph)
    async with open_database(db) as database:
        app = build_graph(
            ref, settings.options, database.saver, approve_before=settings.approve_before
        )
        thread_id = check_thread_id(thread_id) if thread_id is not None else uuid.uuid4().hex[:12]
        if not await database.threads.create(
            thread_id, ref, task, asdict(settings), owner=OWNER, input=input
        ):
            raise ThreadError(
                f"thread {thread_id!r} already exists; use `plait resume {thread_id}`"
            )
        start = {"task": task} if input is None else {"task": task, "input": input}
        job = _Job(app, database, thread_id, ref, settings, context, on_event)
        return await _drive(job, start)


async def resume(
    thread_id: str,
    *,
    db: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    decision: Decision | None = None,
    on_event: EventHandler | None = None,
    context: PlaitContext | None = None,
) -> Outcome:
    """Continue a thread from its last checkpoint with the settings it was started with.

    Args:
        thread_id: The thread.
        db: The database path.
        overrides: Stored settings to change, by name (``model``, ``model_for``, ``base_url``,
            ``fallbacks``, ``max_tokens``, ``max_cost``, ``max_calls``); stored with them.
        decision: A person's answer, for a thread waiting for one.
        on_event: Progress events, as for ``run``.
        context: Model objects, as for ``run``.

    Raises:
        ThreadError: unknown thread, a finished one, or one another process is running.
        UsageError: a waiting thread without a decision, or a decision nobody asked for.
        RunFailed: as for ``run``.
    """
    async with open_database(db) as database:
        record = await database.threads.get(thread_id)
        if record is None:
            raise ThreadError(
                f"no thread {thread_id!r} in {database.path}; `plait threads` lists them"
            )
        if record.status == ThreadStatus.DONE:
            raise ThreadError(f"thread {thread_id!r} already finished; nothing to resume")
        if record.running_elsewhere():
            raise ThreadError(
                f"thread {thread_id!r} is being run by process {record.owner}; "
                "wait for it to stop, or stop it, then resume"
            )
        settings = RunSettings.from_stored(record.settings).override(**(overrides or {}))
        if overrides and overrides.get("model_for") and not is_reference(record.graph):
            # A typo in a role would otherwise leave the stored model serving it, silently.
            check_roles(record.graph, settings.options, overrides["model_for"])
        if context is None:
            settings.check_models()
            context = settings.context()
        app = build_graph(
            record.graph, settings.options, database.saver, approve_before=settings.approve_before
        )
        snapshot = await app.aget_state(_config(thread_id, settings))
        # A step whose writes were saved but whose checkpoint was not (the disk filled in
        # between) has no `next`, only tasks: it is not finished.
        if snapshot.values and not snapshot.next and not snapshot.tasks:
            await database.threads.update(thread_id, status=ThreadStatus.DONE, owner=None)
            raise ThreadError(f"thread {thread_id!r} already finished; nothing to resume")
        start = _resume_input(record, snapshot, decision)
        if not await database.threads.claim(record, OWNER):
            raise ThreadError(f"thread {thread_id!r} was resumed by another process just now")
        if isinstance(start, Decision):  # a rejection at an --approve-before pause
            reason = (
                f"rejected before {', '.join(snapshot.next)}: {start.feedback or 'no reason given'}"
            )
            await database.threads.update(
                thread_id, status=ThreadStatus.REJECTED, error=reason, owner=None
            )
            return _outcome(thread_id, record.graph, ThreadStatus.REJECTED, snapshot, reason)
        await database.threads.update(thread_id, settings=asdict(settings))
        job = _Job(app, database, thread_id, record.graph, settings, context, on_event)
        return await _drive(job, start, usage=snapshot.values.get("usage", {}), calls=record.calls)


def _resume_input(
    record: ThreadRecord, snapshot: StateSnapshot, decision: Decision | None
) -> GraphInput | Decision:
    """What to stream into the graph on resume: nothing, a person's answer, or the input."""
    waiting = bool(snapshot.interrupts) or record.status in (
        ThreadStatus.WAITING,
        ThreadStatus.REJECTED,
    )
    if waiting and decision is None:
        raise UsageError(
            f"thread {record.thread_id!r} is waiting for a person before "
            f"{', '.join(snapshot.next)}: resume with --approve, --reject [--feedback TEXT] "
            "or --answer TEXT"
        )
    if decision is not None and not waiting:
        raise UsageError(f"thread {record.thread_id!r} is not waiting for a decision")
    if snapshot.interrupts:
        assert decision is not None  # waiting: refused above without one
        return Command(resume=decision.value())
    if waiting:  # an --approve-before pause: only a yes or a no will do
        assert decision is not None  # refused above without one
        if decision.approved is None:
            raise UsageError(
                f"thread {record.thread_id!r} waits for approval before "
                f"{', '.join(snapshot.next)}: give --approve or --reject [--feedback TEXT]"
            )
        return None if decision.approved else decision
    if snapshot.next:
        return None
    # Killed before its first checkpoint: start again from the input.
    start = {"task": record.task}
    return start if record.input is None else {**start, "input": record.input}


@dataclass
class _Job:
    """One stretch of a thread's run: the compiled graph, where it records, how it reports."""

    app: Pregel[Any, Any, Any, Any]
    database: Database
    thread_id: str
    graph: str  # the reference stored with the thread
    settings: RunSettings
    context: PlaitContext
    on_event: EventHandler | None

    async def stopped(self, status: ThreadStatus, **fields: Any) -> None:
        """Record that the run stopped, and that no process runs the thread now."""
        await self.database.threads.update(self.thread_id, status=status, owner=None, **fields)


async def _drive(
    job: _Job, start: GraphInput, *, usage: dict[str, AgentUsage] | None = None, calls: int = 0
) -> Outcome:
    """Stream ``start`` into the graph to its end or a pause, recording how it stopped."""
    database, thread_id, settings, context = job.database, job.thread_id, job.settings, job.context
    on_event = job.on_event
    emit = on_event or (lambda kind, data: None)
    config = _config(thread_id, settings)
    emit("start", {"thread_id": thread_id, "graph": job.graph, "resumed": start is None})
    usage = usage or {}
    seed_budget(context, usage, calls)
    context.on_call = _call_counter(database, thread_id)
    if context.on_notice is None:
        context.on_notice = lambda text: emit("notice", {"text": text})
    final: dict[str, Any] = {}
    paused = bool(settings.approve_before)  # static pauses send no event; ask the saver
    # With a list of stream modes each item is a (mode, chunk) pair; LangGraph's return type
    # does not say so.
    mode: str
    chunk: Any
    try:
        async for mode, chunk in job.app.astream(
            start,
            config,
            context=context,
            stream_mode=["tasks", "updates", "values"] if on_event else ["updates", "values"],
            durability="sync",
        ):
            if mode == "values":
                final = chunk
            elif mode == "tasks" and "input" in chunk:
                emit(
                    "node", {"name": chunk["name"], "phase": "start", "tokens": total_tokens(usage)}
                )
            elif mode == "updates":
                # Writes replayed on resume come marked as cached; their usage is already in
                # the snapshot's usage this count started from.
                replayed = "__metadata__" in chunk
                paused = paused or "__interrupt__" in chunk
                for name, update in chunk.items():
                    if name.startswith("__"):
                        continue
                    update = update if isinstance(update, dict) else {}
                    if not replayed:
                        usage = add_usage(usage, update.get("usage"))
                    emit(
                        "node",
                        {
                            "name": name,
                            "phase": "end",
                            "tokens": total_tokens(usage),
                            "iteration": update.get("iteration"),
                        },
                    )
    except asyncio.CancelledError:
        await job.stopped(ThreadStatus.INTERRUPTED)
        raise
    except BudgetExceeded as exc:
        await job.stopped(ThreadStatus.BUDGET, error=str(exc), tokens=context.budget.tokens)
        raise BudgetStopped(thread_id, str(exc), exc.limit) from exc
    except DatabaseError as exc:
        # A checkpoint could not be written or read: the database failed, not the run, so
        # exit 6 with its advice. Mark the thread failed if the index can still be written;
        # if not (the disk is full), it stays "running" under this process, which
        # `plait threads` shows as gone once the process exits.
        with contextlib.suppress(sqlite3.Error):
            await job.stopped(ThreadStatus.FAILED, error=str(exc), tokens=context.budget.tokens)
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, PlaitError) else f"{type(exc).__name__}: {exc}"
        await job.stopped(ThreadStatus.FAILED, error=message, tokens=context.budget.tokens)
        if isinstance(exc, UsageError):  # the input was wrong: exit 2, not "resume it"
            raise
        raise RunFailed(thread_id, message) from exc
    finally:
        # When the database is what failed, this write fails too: let the first error speak.
        with contextlib.suppress(sqlite3.Error):
            await _record_methods(database, thread_id, settings, context)
    # The last streamed values are the final state; only a pause needs the saver's snapshot
    # (what runs next, what was asked), which costs a checkpoint read.
    snapshot: StateSnapshot | _Finished = (
        await job.app.aget_state(config) if paused else _Finished(final)
    )
    status = ThreadStatus.WAITING if snapshot.next else ThreadStatus.DONE
    await job.stopped(status, tokens=total_tokens(snapshot.values.get("usage")))
    outcome = _outcome(thread_id, job.graph, status, snapshot)
    outcome.fallback_calls = _fallback_calls(settings, outcome.usage) or None
    outcome.methods = dict(context.methods) or None
    return outcome


def _call_counter(database: Database, thread_id: str) -> Callable[[int], Awaitable[None]]:
    async def count(calls: int) -> None:
        try:
            await database.threads.count_calls(thread_id, calls)
        except sqlite3.Error as exc:  # the disk filled: a database fault, not the graph's
            raise database_error(database.path, exc, thread_id) from None

    return count


async def _record_methods(
    database: Database, thread_id: str, settings: RunSettings, context: PlaitContext
) -> None:
    # The structured-output methods endpoints accepted are kept with the thread, so `threads
    # show` can say which was used and a resume does not send a refused request again.
    if context.methods != settings.methods:
        settings.methods = dict(context.methods)
        await database.threads.update(thread_id, settings=asdict(settings))


def _fallback_calls(settings: RunSettings, usage: dict[str, Any]) -> dict[str, int]:
    # Usage counts calls by the model name the reply reports: a spec's name is after the
    # colon, a profile's is its own spec's.
    served: dict[str, int] = {}
    for agent in usage.values():
        for name, calls in agent.get("models", {}).items():
            served[name] = served.get(name, 0) + calls

    def name_of(spec: str) -> str:
        spec = settings.models.get(spec, {}).get("model", spec)
        return spec.partition(":")[2] or spec

    counted = {spec: served.get(name_of(spec), 0) for spec in settings.fallbacks}
    return {spec: calls for spec, calls in counted.items() if calls}


@dataclass
class _Finished:
    """The part of a StateSnapshot ``_outcome`` reads, for a run that ran to its end."""

    values: dict[str, Any]
    next: tuple[str, ...] = ()
    interrupts: tuple[Any, ...] = ()


def _outcome(
    thread_id: str,
    ref: str,
    status: ThreadStatus,
    snapshot: StateSnapshot | _Finished,
    error: str | None = None,
) -> Outcome:
    values = dict(snapshot.values)
    waiting = None
    if status == ThreadStatus.WAITING:
        waiting = {
            "before": list(snapshot.next),
            "questions": [i.value for i in snapshot.interrupts],
        }
    return Outcome(
        thread_id=thread_id,
        graph=ref,
        status=status,
        result=values.get("result") if error is None else None,
        usage=values.get("usage", {}),
        errors=values.get("errors", {}),
        values=values,
        stop_reason=values.get("stop_reason") if error is None else error,
        waiting=waiting,
    )


def _config(thread_id: str, settings: RunSettings) -> RunnableConfig:
    config: RunnableConfig = {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": RECURSION_LIMIT,
    }
    config["max_concurrency"] = settings.option("max_concurrency")
    return config


async def fork(
    thread_id: str,
    checkpoint_id: str,
    *,
    db: str | os.PathLike[str] | None = None,
    new_thread_id: str | None = None,
    edits: dict[str, Any] | None = None,
) -> str:
    """Start a new thread from one of ``thread_id``'s checkpoints: ``Threads(db).fork``."""
    from plait.threads import Threads

    return await Threads(db).fork(
        thread_id, checkpoint_id, new_thread_id=new_thread_id, edits=edits
    )
