"""``plait threads``: list, inspect and delete saved threads, and find the database."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from plait.cli.options import DbOpt, JsonOpt
from plait.cli.output import cli_errors, out, print_json
from plait.errors import ThreadError

app = typer.Typer(help="List, inspect and delete saved threads; `plait threads path` finds the file.")

IdArg = Annotated[str, typer.Argument(help="The thread id (see `plait threads`).", show_default=False)]


def _ago(ts: float) -> str:
    seconds = max(0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


async def _with_db(db: str | None, work):
    from plait.checkpoints import open_database

    async with open_database(db) as database:
        return await work(database)


async def _record(database, thread_id: str):
    record = await database.threads.get(thread_id)
    if record is None:
        raise ThreadError(f"no thread {thread_id!r} in {database.path}; `plait threads` lists them")
    return record


@app.callback(invoke_without_command=True)
def list_threads(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="Only threads in this state: running, done, failed, interrupted, waiting, budget.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most threads to list, newest first.")] = 50,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List threads: id, graph, task, status, last update, tokens."""
    if ctx.invoked_subcommand:
        return
    from plait.checkpoints.threads import STATUSES

    with cli_errors():
        if status is not None and status not in STATUSES:
            from plait.errors import UsageError

            raise UsageError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
        records = asyncio.run(_with_db(db, lambda d: d.threads.list(status=status, limit=limit)))
        if json_:
            print_json([r.as_json() for r in records])
            return
        table = Table("thread", "graph", "task", "status", "updated", "tokens", box=None, pad_edge=False)
        for r in records:
            task = r.task if len(r.task) <= 40 else r.task[:39] + "…"
            graph = r.graph.rsplit("/", 1)[-1]
            cells = (r.thread_id, graph, task, r.status, _ago(r.updated_at), f"{r.tokens:,}")
            table.add_row(*(Text(cell) for cell in cells))
        out.print(table if records else "no threads yet; `plait run NAME TASK` starts one")


@app.command("show")
def show(thread_id: IdArg, db: DbOpt = None, json_: JsonOpt = False) -> None:
    """Show a thread's settings, status, usage per agent and result."""

    async def work(database) -> tuple[Any, dict]:
        record = await _record(database, thread_id)
        saved = await database.saver.aget_tuple({"configurable": {"thread_id": thread_id}})
        return record, dict(saved.checkpoint["channel_values"]) if saved else {}

    with cli_errors():
        record, values = asyncio.run(_with_db(db, work))
        keys = ("result", "usage", "errors", "stop_reason")
        if json_:
            print_json({**record.as_json(), **{k: values.get(k) for k in keys}})
            return
        out.print(f"[bold]{escape(record.thread_id)}[/] · {escape(record.graph)} · {record.status}")
        out.print(f"task: {record.task}", markup=False)
        settings = record.settings
        out.print(f"model: {settings['model']}" + "".join(
            f", {role}={spec}" for role, spec in settings.get("model_for", {}).items()), markup=False)
        if settings.get("options"):
            out.print("options: " + ", ".join(f"{k}={v}" for k, v in settings["options"].items()), markup=False)
        if record.error:
            out.print(f"[red]error:[/] {escape(record.error)}")
        _usage_table(values.get("usage") or {})
        for branch, message in (values.get("errors") or {}).items():
            out.print(f"[yellow]branch {escape(branch)} failed:[/] {escape(message)}")
        if values.get("stop_reason"):
            out.print(f"stopped: {values['stop_reason']}", markup=False)
        if values.get("result") is not None:
            out.print("\n" + values["result"], markup=False)


def _usage_table(usage: dict) -> None:
    if not usage:
        return
    table = Table("agent", "calls", "input tokens", "output tokens", "seconds", "models", box=None, pad_edge=False)
    for agent, u in usage.items():
        models = ", ".join(f"{m}×{n}" for m, n in u.get("models", {}).items())
        table.add_row(agent, str(u.get("calls", 0)), f"{u.get('input_tokens', 0):,}",
                      f"{u.get('output_tokens', 0):,}", f"{u.get('seconds', 0):.2f}", models)
    out.print(table)


@app.command("history")
def history(thread_id: IdArg, db: DbOpt = None, json_: JsonOpt = False) -> None:
    """List a thread's checkpoints, newest first: step, what was written, what runs next."""

    async def work(database) -> list[dict]:
        await _record(database, thread_id)
        rows = []
        async for saved in database.saver.alist({"configurable": {"thread_id": thread_id}}):
            channels = saved.checkpoint.get("updated_channels") or []
            rows.append({
                "checkpoint": saved.config["configurable"]["checkpoint_id"],
                "step": saved.metadata.get("step"),
                "source": saved.metadata.get("source"),
                "wrote": [c for c in channels if not c.startswith(("branch:", "__"))],
                "next": [c.removeprefix("branch:to:") for c in channels if c.startswith("branch:to:")],
                "time": saved.checkpoint["ts"],
            })
        return rows

    with cli_errors():
        rows = asyncio.run(_with_db(db, work))
        if json_:
            print_json(rows)
            return
        table = Table("step", "source", "wrote", "next", "time", "checkpoint", box=None, pad_edge=False)
        for row in rows:
            table.add_row(str(row["step"]), row["source"] or "", ", ".join(row["wrote"]),
                          ", ".join(row["next"]), row["time"][:19], row["checkpoint"])
        out.print(table)


@app.command("delete")
def delete(thread_id: IdArg, db: DbOpt = None) -> None:
    """Delete a thread and all its checkpoints."""

    async def work(database) -> None:
        await _record(database, thread_id)
        await database.saver.adelete_thread(thread_id)
        await database.threads.delete(thread_id)

    with cli_errors():
        asyncio.run(_with_db(db, work))
        out.print(f"deleted thread {thread_id}")


@app.command("path")
def path(db: DbOpt = None) -> None:
    """Print the path of the checkpoint database."""
    from plait.checkpoints.sqlite import resolve_db_path

    typer.echo(str(resolve_db_path(db)))
