"""``plait threads``: list, inspect and delete saved threads, and find the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from plait.cli.options import DbOpt, JsonOpt
from plait.cli.output import cli_errors, out, print_json

if TYPE_CHECKING:  # imported where used, so `plait --help` stays fast
    from plait.checkpoints.threads import ThreadRecord
    from plait.state.usage import AgentUsage
    from plait.threads import Threads

app = typer.Typer(
    help="List, inspect and delete saved threads; `plait threads path` finds the file."
)

IdArg = Annotated[
    str, typer.Argument(help="The thread id (see `plait threads`).", show_default=False)
]


def _threads(db: str | None) -> Threads:
    from plait.threads import Threads

    return Threads(db)


def _ago(ts: float) -> str:
    seconds = max(0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


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
        records = asyncio.run(_threads(db).list(status=status, limit=limit))
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
    with cli_errors():
        view = asyncio.run(_threads(db).show(thread_id))
        if json_:
            print_json(view.as_json())
            return
        record = view.record
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
        _usage_table(view.usage)
        for branch, message in view.errors.items():
            out.print(f"[yellow]branch {escape(branch)} failed:[/] {escape(message)}")
        if view.stop_reason:
            out.print(f"stopped: {view.stop_reason}", markup=False)
        if view.result is not None:
            out.print("\n" + view.result, markup=False)


def _status(record: ThreadRecord) -> str:
    from plait.checkpoints.threads import ThreadStatus

    # A thread whose process died (SIGKILL, a full disk) is still stored as running.
    if record.status == ThreadStatus.RUNNING and not record.running_elsewhere():
        return "running (process gone: resume it)"
    return record.status


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
    with cli_errors():
        rows = asyncio.run(_threads(db).history(thread_id))
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
    with cli_errors():
        envelopes = asyncio.run(_threads(db).log(thread_id))
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
    with cli_errors():
        asyncio.run(_threads(db).delete(thread_id))
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

    with cli_errors():
        edits = parse_free_options(set_)
        created = asyncio.run(
            _threads(db).fork(thread_id, checkpoint, new_thread_id=new_id, edits=edits)
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
    with cli_errors():
        report = asyncio.run(
            _threads(db).prune(
                older_than=older_than,
                keep_last=keep_last,
                status=status,
                checkpoints_only=checkpoints,
                dry_run=dry_run,
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
    typer.echo(str(_threads(db).path))
