"""Thread operations in one place: ``Threads(db)`` runs, resumes, lists, shows, forks, prunes
and deletes threads, for the CLI and for Python callers alike.

Each call opens the database, does its work and closes it again, as one CLI command does::

    threads = Threads("runs.db")
    view = await threads.show("alpha")
    print(view.status, view.result, view.usage)
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, get_args, get_origin

from plait.checkpoints.sqlite import open_database, resolve_db_path
from plait.checkpoints.threads import ThreadRecord, ThreadStatus
from plait.errors import PlaitError, ThreadError, UsageError
from plait.graphs.loader import build_graph
from plait.settings import RunSettings

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.pregel import Pregel

    from plait.checkpoints.retention import PruneReport
    from plait.checkpoints.sqlite import Database
    from plait.models.context import PlaitContext
    from plait.nodes.human import Decision
    from plait.runner import EventHandler, Outcome
    from plait.state.log import Envelope
    from plait.state.usage import AgentUsage


@dataclass
class ThreadView:
    """A thread's index record and the headline keys of its state, as ``threads show`` prints."""

    record: ThreadRecord
    result: str | None
    usage: dict[str, AgentUsage]
    errors: dict[str, str]
    stop_reason: str | None
    values: dict[str, Any]  # the whole state (the last checkpoint plus finished branches)

    @property
    def status(self) -> ThreadStatus:
        return self.record.status

    def as_json(self) -> dict[str, Any]:
        """The documented ``threads show --json`` document."""
        keys = ("result", "usage", "errors", "stop_reason")  # as stored: None when missing
        return {**self.record.as_json(), **{key: self.values.get(key) for key in keys}}


class CheckpointInfo(TypedDict):
    """One checkpoint of a thread, as ``threads history`` lists it."""

    checkpoint: str  # the id `fork` takes
    step: int | None
    source: str | None  # "input", "loop" or "update"
    wrote: list[str]  # the state keys this step wrote
    next: list[str]  # the nodes that run next
    time: str  # ISO 8601


def parse_status(status: str | None) -> ThreadStatus | None:
    """``status`` as a ``ThreadStatus``.

    Raises:
        UsageError: not one of them, listing them.
    """
    if status is None:
        return None
    try:
        return ThreadStatus(status)
    except ValueError:
        choices = ", ".join(ThreadStatus)
        raise UsageError(f"unknown status {status!r}; choose one of {choices}") from None


class Threads:
    """The threads of one database (default: ``PLAIT_DB``, then the per-user file)."""

    def __init__(self, db: str | os.PathLike[str] | None = None) -> None:
        self.db = db

    @property
    def path(self) -> Path:
        """The database file."""
        return resolve_db_path(self.db)

    async def run(
        self,
        graph: str,
        task: str,
        *,
        settings: RunSettings | None = None,
        thread_id: str | None = None,
        on_event: EventHandler | None = None,
        context: PlaitContext | None = None,
        input: str | None = None,
    ) -> Outcome:
        """Start a thread: ``plait.run`` on this database."""
        from plait.runner import run

        return await run(
            graph,
            task,
            settings=settings,
            db=self.db,
            thread_id=thread_id,
            on_event=on_event,
            context=context,
            input=input,
        )

    async def resume(
        self,
        thread_id: str,
        *,
        overrides: dict[str, Any] | None = None,
        decision: Decision | None = None,
        on_event: EventHandler | None = None,
        context: PlaitContext | None = None,
    ) -> Outcome:
        """Continue a thread: ``plait.resume`` on this database."""
        from plait.runner import resume

        return await resume(
            thread_id,
            db=self.db,
            overrides=overrides,
            decision=decision,
            on_event=on_event,
            context=context,
        )

    async def get(self, thread_id: str) -> ThreadRecord | None:
        """The thread's record, or None for an unknown thread."""
        async with open_database(self.db) as database:
            return await database.threads.get(thread_id)

    async def show(self, thread_id: str) -> ThreadView:
        """The thread's record and state.

        Raises:
            ThreadError: unknown thread.
        """
        async with open_database(self.db) as database:
            record = await _record(database, thread_id)
            values = await _state(database, record)
        return ThreadView(
            record=record,
            result=values.get("result"),
            usage=values.get("usage") or {},
            errors=values.get("errors") or {},
            stop_reason=values.get("stop_reason"),
            values=values,
        )

    async def history(self, thread_id: str) -> list[CheckpointInfo]:
        """The thread's checkpoints, newest first.

        Raises:
            ThreadError: unknown thread.
        """
        rows: list[CheckpointInfo] = []
        async with open_database(self.db) as database:
            await _record(database, thread_id)
            async for saved in database.saver.alist({"configurable": {"thread_id": thread_id}}):
                channels = saved.checkpoint.get("updated_channels") or []
                rows.append(
                    {
                        "checkpoint": saved.config["configurable"]["checkpoint_id"],
                        "step": saved.metadata.get("step"),
                        "source": saved.metadata.get("source"),
                        "wrote": [c for c in channels if not c.startswith(("branch:", "__"))],
                        "next": [
                            c.removeprefix("branch:to:")
                            for c in channels
                            if c.startswith("branch:to:")
                        ],
                        "time": saved.checkpoint["ts"],
                    }
                )
        return rows

    async def log(self, thread_id: str) -> list[Envelope]:
        """Every envelope the thread's nodes wrote, oldest first, each once.

        The state keeps only the latest few; each node's entries are also stored once, as that
        node's write, and a write replayed on resume has the same envelope id.

        Raises:
            ThreadError: unknown thread.
        """
        seen: dict[str, Envelope] = {}
        async with open_database(self.db) as database:
            await _record(database, thread_id)
            serde = database.saver.serde
            async with (
                database.saver.lock,
                database.saver.conn.execute(
                    "SELECT type, value FROM writes WHERE thread_id = ? AND channel = 'log'",
                    (thread_id,),
                ) as cur,
            ):
                async for kind, value in cur:
                    for envelope in serde.loads_typed((kind, value)) or []:
                        seen.setdefault(envelope["id"], envelope)
        return sorted(seen.values(), key=lambda e: e["ts"])

    async def delete(self, thread_id: str) -> None:
        """Delete the thread and all its checkpoints.

        Raises:
            ThreadError: unknown thread, or one a live process runs.
        """
        async with open_database(self.db) as database:
            record = await _record(database, thread_id)
            if record.running_elsewhere():
                raise ThreadError(
                    f"thread {thread_id!r} is being run by process {record.owner}; stop it first"
                )
            await database.saver.adelete_thread(thread_id)
            await database.threads.delete(thread_id)

    async def prune(
        self,
        *,
        older_than: float | str | None = None,
        keep_last: int | None = None,
        status: ThreadStatus | str | None = None,
        checkpoints_only: bool = False,
        dry_run: bool = False,
    ) -> PruneReport:
        """Delete old threads (or all but their latest checkpoint) and reclaim the space.

        ``older_than`` is seconds or text such as ``30d``; the rest is as for
        ``plait.checkpoints.retention.prune``.

        Raises:
            UsageError: no filter, a bad age or an unknown status.
        """
        from plait.checkpoints.retention import parse_age, prune

        wanted = parse_status(status)
        age = parse_age(older_than) if isinstance(older_than, str) else older_than
        async with open_database(self.db) as database:
            return await prune(
                database,
                older_than=age,
                keep_last=keep_last,
                status=wanted,
                checkpoints_only=checkpoints_only,
                dry_run=dry_run,
            )

    async def fork(
        self,
        thread_id: str,
        checkpoint_id: str,
        *,
        new_thread_id: str | None = None,
        edits: dict[str, Any] | None = None,
    ) -> str:
        """Start a new thread from one of ``thread_id``'s checkpoints, optionally editing its
        state; the original is left as it was, and ``resume`` runs the new one on.

        Returns:
            The new thread's id.

        Raises:
            ThreadError: unknown thread or checkpoint, or a taken ``new_thread_id``.
            UsageError: an edit names a key the graph's state does not have, or a value that
                does not fit the key's type; no thread is created.
        """
        from plait.checkpoints.retention import fork_thread

        async with open_database(self.db) as database:
            record = await _record(database, thread_id)
            settings = RunSettings.from_stored(record.settings)
            app = build_graph(
                record.graph,
                settings.options,
                database.saver,
                approve_before=settings.approve_before,
            )
            keys = sorted(k for k in app.channels if not k.startswith(("__", "branch:")))
            unknown = [k for k in (edits or {}) if k not in keys]
            if unknown:
                raise UsageError(f"the state has no key {unknown[0]!r}; keys: {', '.join(keys)}")
            edits = {key: _checked_edit(app, key, value) for key, value in (edits or {}).items()}
            new_thread_id = new_thread_id or uuid.uuid4().hex[:12]
            await fork_thread(database, record, checkpoint_id, new_thread_id)
            try:
                await _finish_fork(app, database, settings, new_thread_id, checkpoint_id, edits)
            except BaseException:
                # A fork that could not be finished is no thread to resume: leave none behind.
                await database.saver.adelete_thread(new_thread_id)
                await database.threads.delete(new_thread_id)
                raise
            return new_thread_id

    # Last: below this line, `list` in the class body would name this method, not the type.
    async def list(
        self, *, status: ThreadStatus | str | None = None, limit: int = 50
    ) -> list[ThreadRecord]:
        """The threads, newest first (``limit`` -1: all).

        Raises:
            UsageError: an unknown status.
        """
        wanted = parse_status(status)
        async with open_database(self.db) as database:
            return await database.threads.list(status=wanted, limit=limit)


async def _record(database: Database, thread_id: str) -> ThreadRecord:
    record = await database.threads.get(thread_id)
    if record is None:
        raise ThreadError(f"no thread {thread_id!r} in {database.path}; `plait threads` lists them")
    return record


async def _state(database: Database, record: ThreadRecord) -> dict[str, Any]:
    """The thread's state as the graph sees it: the last checkpoint plus the writes of
    branches that finished in the step that then stopped (a failure, a budget).
    """
    config: RunnableConfig = {"configurable": {"thread_id": record.thread_id}}
    try:
        options = RunSettings.from_stored(record.settings).options
        app = build_graph(record.graph, options, database.saver)
    except PlaitError:  # the graph's file is gone: the last checkpoint alone still tells a lot
        saved = await database.saver.aget_tuple(config)
        return dict(saved.checkpoint["channel_values"]) if saved else {}
    return dict((await app.aget_state(config)).values)


async def _finish_fork(
    app: Pregel[Any, Any, Any, Any],
    database: Database,
    settings: RunSettings,
    new_thread_id: str,
    checkpoint_id: str,
    edits: dict[str, Any],
) -> None:
    # LangGraph has already noted that an --approve-before gate fired at a paused
    # checkpoint; a fork of it must still wait for the person, not run straight through.
    at: RunnableConfig = {
        "configurable": {
            "thread_id": new_thread_id,
            "checkpoint_ns": "",
            "checkpoint_id": checkpoint_id,
        }
    }
    if set((await app.aget_state(at)).next) & set(settings.approve_before):
        await database.threads.update(new_thread_id, status=ThreadStatus.WAITING)
    if edits:
        await app.aupdate_state(at, edits)


def _checked_edit(app: Pregel[Any, Any, Any, Any], key: str, value: Any) -> Any:
    """``value`` checked against the type the state declares for ``key`` (as pydantic
    converts it), so a bad edit is refused before a thread exists instead of failing every
    resume of the fork.

    Raises:
        UsageError: naming the key, the type and the value.
    """
    from pydantic import TypeAdapter, ValidationError

    annotation = getattr(app.channels[key], "typ", Any)
    if get_origin(annotation) is Annotated:  # a key with a reducer: the value type
        annotation = get_args(annotation)[0]
    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # a type pydantic cannot check (an authored graph's own class)
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "…"
        hint = " (quote text that looks like JSON: '\"42\"')" if annotation is str else ""
        raise UsageError(
            f"state key {key!r} takes {_type_label(annotation)}, got {shown}: "
            f"{problem['msg']}{f' at {where}' if where else ''}{hint}"
        ) from None


def _type_label(annotation: Any) -> str:
    # `list[plait.graphs.orchestrator.Subtask]` reads better as `list[Subtask]`.
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    return re.sub(r"\b(?:\w+\.)+", "", str(annotation))
