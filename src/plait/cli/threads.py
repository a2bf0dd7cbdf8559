"""``plait threads``: list, inspect and delete saved threads, and find the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from plait.cli.options import DbOpt, JsonOpt
from plait.cli.output import cli_errors, out, print_json
from plait.errors import PlaitError, ThreadError

if TYPE_CHECKING:  # imported where used, so `plait --help` stays fast
    from langchain_core.runnables import RunnableConfig

    from plait.checkpoints.sqlite import Database
    from plait.checkpoints.threads import ThreadRecord
    from plait.state.log import Envelope
    from plait.state.usage import AgentUsage

_T = TypeVar("_T")

app = typer.Typer(
    help="List, inspect and delete saved threads; `plait threads path` finds the file."
)

IdArg = Annotated[
    str, typer.Argument(help="The thread id (see `plait threads`).", show_default=False)
]


def _check_status(status: str | None) -> None:
    from plait.checkpoints.threads import STATUSES
    from plait.errors import UsageError

    if status is not None and status not in STATUSES:
        raise UsageError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")


def _ago(ts: float) -> str:
    seconds = max(0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


async def _with_db(db: str | None, work: Callable[[Database], Awaitable[_T]]) -> _T:
    from plait.checkpoints import open_database

    async with open_database(db) as database:
        return await work(database)


async def _record(database: Database, thread_id: str) -> ThreadRecord:
    record = await database.threads.get(thread_id)
    if record is None:
        raise ThreadError(f"no thread {thread_id!r} in {database.path}; `plait threads` lists them")
    return record


@app.callback(invoke_without_command=True)
def list_threads(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only threads in this state: running, done, failed, interrupted, waiting, budget, rejected, forked.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Most threads to list, newest first.")
    ] = 50,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List threads: id, graph, task, status, last update, tokens."""
    if ctx.invoked_subcommand:
        return
    with cli_errors():
        _check_status(status)
        records = asyncio.run(_with_db(db, lambda d: d.threads.list(status=status, limit=limit)))
        if json_:
            print_json([r.as_json() for r in records])
            return
        table = Table(
            "thread", "graph", "task", "status", "updated", "tokens", box=None, pad_edge=False
        )
        for r in records:
            task = r.task if len(r.task) <= 40 else r.task[:39] + "…"
            graph = r.graph.rsplit("/", 1)[-1]
            cells = (r.thread_id, graph, task, _status(r), _ago(r.updated_at), f"{r.tokens:,}")
            table.add_row(*(Text(cell) for cell in cells))
        out.print(table if records else "no threads yet; `plait run NAME TASK` starts one")


@app.command("show")
def show(thread_id: IdArg, db: DbOpt = None, json_: JsonOpt = False) -> None:
    """Show a thread's settings, status, usage per agent and result."""

    async def work(database: Database) -> tuple[ThreadRecord, dict[str, Any]]:
        record = await _record(database, thread_id)
        return record, await _state(database, record)

    with cli_errors():
        record, values = asyncio.run(_with_db(db, work))
        keys = ("result", "usage", "errors", "stop_reason")
        if json_:
            print_json({**record.as_json(), **{k: values.get(k) for k in keys}})
            return
        out.print(
            f"[bold]{escape(record.thread_id)}[/] · {escape(record.graph)} · {escape(_status(record))}"
        )
        out.print(f"task: {record.task}", markup=False)
        settings = record.settings
        out.print(
            f"model: {settings['model']}"
            + "".join(f", {role}={spec}" for role, spec in settings.get("model_for", {}).items()),
            markup=False,
        )
        if settings.get("options"):
            out.print(
                "options: " + ", ".join(f"{k}={v}" for k, v in settings["options"].items()),
                markup=False,
            )
        for endpoint, method in (settings.get("methods") or {}).items():
            out.print(f"structured output: {method} ({endpoint})", markup=False)
        if record.error:
            out.print(f"[red]error:[/] {escape(record.error)}")
        _usage_table(values.get("usage") or {})
        for branch, message in (values.get("errors") or {}).items():
            out.print(f"[yellow]branch {escape(branch)} failed:[/] {escape(message)}")
        if values.get("stop_reason"):
            out.print(f"stopped: {values['stop_reason']}", markup=False)
        if values.get("result") is not None:
            out.print("\n" + values["result"], markup=False)


def _status(record: ThreadRecord) -> str:
    # A thread whose process died (SIGKILL, a full disk) is still stored as running.
    if record.status == "running" and not record.running_elsewhere():
        return "running (process gone: resume it)"
    return record.status


async def _state(database: Database, record: ThreadRecord) -> dict[str, Any]:
    """The thread's state as the graph sees it: the last checkpoint plus the writes of
    branches that finished in the step that then stopped (a failure, a budget).
    """
    from plait.graphs.loader import build_graph
    from plait.settings import RunSettings

    config: RunnableConfig = {"configurable": {"thread_id": record.thread_id}}
    try:
        options = RunSettings.from_stored(record.settings).options
        app = build_graph(record.graph, options, database.saver)
    except PlaitError:  # the graph's file is gone: the last checkpoint alone still tells a lot
        saved = await database.saver.aget_tuple(config)
        return dict(saved.checkpoint["channel_values"]) if saved else {}
    return dict((await app.aget_state(config)).values)


async def full_log(database: Database, thread_id: str) -> list[Envelope]:
    """Every envelope the thread's nodes wrote, oldest first, each once.

    Each node's log entries are stored once, as that node's write, whatever the window the
    state keeps; a write replayed on resume has the same envelope id and is counted once.
    """
    serde = database.saver.serde
    seen: dict[str, Envelope] = {}
    async with (
        database.saver.lock,
        database.saver.conn.execute(
            "SELECT type, value FROM writes WHERE thread_id = ? AND channel = 'log'", (thread_id,)
        ) as cur,
    ):
        async for kind, value in cur:
            for envelope in serde.loads_typed((kind, value)) or []:
                seen.setdefault(envelope["id"], envelope)
    return sorted(seen.values(), key=lambda e: e["ts"])


def _usage_table(usage: Mapping[str, AgentUsage]) -> None:
    if not usage:
        return
    columns = ("agent", "calls", "input tokens", "output tokens", "cost $", "seconds", "models")
    table = Table(*columns, box=None, pad_edge=False)
    for agent, u in usage.items():
        models = ", ".join(f"{m}×{n}" for m, n in u.get("models", {}).items())
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    agent,
                    str(u.get("calls", 0)),
                    f"{u.get('input_tokens', 0):,}",
                    f"{u.get('output_tokens', 0):,}",
                    f"{u.get('cost', 0.0):.4f}",
                    f"{u.get('seconds', 0):.2f}",
                    models,
                )
            )
        )
    out.print(table)
    branches = [
        (agent, key, n) for agent, u in usage.items() for key, n in u.get("branches", {}).items()
    ]
    if branches:
        per_branch = Table("agent", "branch", "calls", "tokens", "cost $", box=None, pad_edge=False)
        for agent, key, n in branches:
            tokens = int(n.get("input_tokens", 0) + n.get("output_tokens", 0))
            per_branch.add_row(
                *(
                    Text(cell)
                    for cell in (
                        agent,
                        key,
                        str(int(n.get("calls", 0))),
                        f"{tokens:,}",
                        f"{n.get('cost', 0):.4f}",
                    )
                )
            )
        out.print(per_branch)
    calls_per_model: dict[str, int] = {}
    for u in usage.values():
        for model, calls in u.get("models", {}).items():
            calls_per_model[model] = calls_per_model.get(model, 0) + calls
    total = sum(u.get("cost", 0.0) for u in usage.values())
    served = ", ".join(f"{m} {n}" for m, n in calls_per_model.items())
    out.print(f"calls per model: {served} · total cost ${total:.4f}", markup=False)


@app.command("history")
def history(thread_id: IdArg, db: DbOpt = None, json_: JsonOpt = False) -> None:
    """List a thread's checkpoints, newest first: step, what was written, what runs next."""

    async def work(database: Database) -> list[dict[str, Any]]:
        await _record(database, thread_id)
        rows: list[dict[str, Any]] = []
        async for saved in database.saver.alist({"configurable": {"thread_id": thread_id}}):
            channels = saved.checkpoint.get("updated_channels") or []
            rows.append(
                {
                    "checkpoint": saved.config["configurable"]["checkpoint_id"],
                    "step": saved.metadata.get("step"),
                    "source": saved.metadata.get("source"),
                    "wrote": [c for c in channels if not c.startswith(("branch:", "__"))],
                    "next": [
                        c.removeprefix("branch:to:") for c in channels if c.startswith("branch:to:")
                    ],
                    "time": saved.checkpoint["ts"],
                }
            )
        return rows

    with cli_errors():
        rows = asyncio.run(_with_db(db, work))
        if json_:
            print_json(rows)
            return
        table = Table("step", "source", "wrote", "next", "time", box=None, pad_edge=False)
        table.add_column("checkpoint", no_wrap=True, min_width=36)  # `fork` needs it whole
        for row in rows:
            table.add_row(
                str(row["step"]),
                row["source"] or "",
                ", ".join(row["wrote"]),
                ", ".join(row["next"]),
                row["time"][:19],
                row["checkpoint"],
            )
        out.print(table)


@app.command("log")
def log(thread_id: IdArg, db: DbOpt = None, json_: JsonOpt = False) -> None:
    """Every message between the thread's agents, oldest first (sender, receiver, kind, text).

    The state keeps only the latest few; this reads them all back from the checkpoints.
    """

    async def work(database: Database) -> list[Envelope]:
        await _record(database, thread_id)
        return await full_log(database, thread_id)

    with cli_errors():
        envelopes = asyncio.run(_with_db(db, work))
        if json_:
            print_json(envelopes)
            return
        table = Table("time", "from", "to", "kind", "about", "content", box=None, pad_edge=False)
        for e in envelopes:
            when = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
            table.add_row(
                *(
                    Text(str(cell))
                    for cell in (
                        when,
                        e["sender"],
                        e["receiver"],
                        e["kind"],
                        e["correlation_id"],
                        e["content"],
                    )
                )
            )
        out.print(table if envelopes else "no messages logged")


@app.command("delete")
def delete(thread_id: IdArg, db: DbOpt = None) -> None:
    """Delete a thread and all its checkpoints."""

    async def work(database: Database) -> None:
        record = await _record(database, thread_id)
        if record.running_elsewhere():
            raise ThreadError(
                f"thread {thread_id!r} is being run by process {record.owner}; stop it first"
            )
        await database.saver.adelete_thread(thread_id)
        await database.threads.delete(thread_id)

    with cli_errors():
        asyncio.run(_with_db(db, work))
        out.print(f"deleted thread {thread_id}", markup=False)


@app.command("fork")
def fork(
    thread_id: IdArg,
    checkpoint: Annotated[
        str,
        typer.Option(
            "--checkpoint",
            "-c",
            help="The checkpoint to start from (see `plait threads history ID`).",
            show_default=False,
        ),
    ],
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            "-s",
            help="Edit the state before going on: key=value, the value JSON or text (repeatable).",
        ),
    ] = [],  # noqa: B006
    new_id: Annotated[
        str | None, typer.Option("--thread", help="Name the new thread.", show_default=False)
    ] = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Start a new thread from a past checkpoint; the original is left intact.

    Continue the new thread with `plait resume NEW_ID`.
    """
    from plait.graphs.loader import parse_free_options
    from plait.runner import fork as fork_thread

    with cli_errors():
        edits = parse_free_options(set_)
        created = asyncio.run(
            fork_thread(thread_id, checkpoint, db=db, new_thread_id=new_id, edits=edits)
        )
        if json_:
            print_json({"thread_id": created, "forked_from": thread_id, "checkpoint": checkpoint})
            return
        out.print(
            f"forked {escape(thread_id)} at {escape(checkpoint)} into [bold]{escape(created)}[/]; "
            f"continue with: plait resume {created}"
        )


@app.command("prune")
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Only threads not updated for this long: 30d, 12h, 90m, 2w.",
            show_default=False,
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", min=0, help="Spare the newest N threads.", show_default=False),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only threads in this state: done, failed, interrupted, waiting, budget, rejected, forked, running (if its process is gone).",
            show_default=False,
        ),
    ] = None,
    checkpoints: Annotated[
        bool,
        typer.Option(
            "--checkpoints", help="Keep the threads; delete all but each one's latest checkpoint."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")
    ] = False,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Delete old threads (or their old checkpoints) and reclaim the disk space.

    Running threads are never pruned. At least one of --older-than, --keep-last, --status.
    """
    from plait.checkpoints.retention import parse_age
    from plait.checkpoints.retention import prune as prune_threads

    with cli_errors():
        _check_status(status)
        age = parse_age(older_than) if older_than is not None else None
        report = asyncio.run(
            _with_db(
                db,
                lambda d: prune_threads(
                    d,
                    older_than=age,
                    keep_last=keep_last,
                    status=status,
                    checkpoints_only=checkpoints,
                    dry_run=dry_run,
                ),
            )
        )
        if json_:
            print_json({**report.__dict__, "dry_run": dry_run})
            return
        verb = "would delete" if dry_run else "deleted"
        names = ", ".join(report.threads) or "none"
        if checkpoints:
            text = f"{verb} {report.checkpoints} old checkpoint(s) of {len(report.threads)} thread(s): {names}"
        else:
            text = f"{verb} {len(report.threads)} thread(s) ({report.checkpoints} checkpoints): {names}"
        out.print(text, markup=False)
        if not dry_run:
            out.print(f"database: {report.bytes_before:,} -> {report.bytes_after:,} bytes")


@app.command("path")
def path(db: DbOpt = None) -> None:
    """Print the path of the checkpoint database."""
    from plait.checkpoints.sqlite import resolve_db_path

    typer.echo(str(resolve_db_path(db)))
