"""``plait run`` and ``plait resume``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from plait.cli.options import (
    BaseUrlOpt,
    ConfigOpt,
    DbOpt,
    FallbackOpt,
    JsonOpt,
    MaxCallsOpt,
    MaxCostOpt,
    MaxTokensOpt,
    ModelForOpt,
    ModelOpt,
    QuietOpt,
    ResumeConfigOpt,
    ResumeModelOpt,
    RunSetOpt,
    parse_model_for,
)
from plait.cli.output import cli_errors, err, print_json
from plait.cli.progress import Progress
from plait.errors import ExitCode, UsageError
from plait.state.usage import total_tokens

if TYPE_CHECKING:
    from plait.runner import Outcome


def run_command(
    graph: Annotated[
        str,
        typer.Argument(
            help="A prebuilt graph (see `plait graphs`), path/to/file.py:attr or package.module:attr.",
            show_default=False,
        ),
    ],
    task: Annotated[
        str,
        typer.Argument(
            help="What the graph should work on; '-' reads it from stdin.", show_default=False
        ),
    ],
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            "-s",
            help="A graph option, key=value (repeatable); `plait graphs show NAME` lists them.",
        ),
    ] = [],  # noqa: B006
    model: ModelOpt = None,
    model_for: ModelForOpt = [],  # noqa: B006
    base_url: BaseUrlOpt = None,
    fallback_model: FallbackOpt = [],  # noqa: B006
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_calls: MaxCallsOpt = None,
    approve_before: Annotated[
        list[str],
        typer.Option(
            "--approve-before",
            help="Pause before this node until a person approves (repeatable); exit code 3 while waiting.",
            show_default=False,
        ),
    ] = [],  # noqa: B006
    db: DbOpt = None,
    thread: Annotated[
        str | None, typer.Option("--thread", help="Name the thread instead of getting a random id.")
    ] = None,
    input_: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="A file of input for the graph (map-reduce items: lines or a JSON array; or a document).",
            show_default=False,
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a graph on a task; the result goes to stdout, progress to stderr.

    Every step is checkpointed: if the run fails, is interrupted or killed, `plait resume ID`
    finishes it without redoing finished work.
    """
    from plait.config import effective, find_config
    from plait.graphs.loader import is_reference, parse_graph_options
    from plait.graphs.registry import check_roles
    from plait.models.spec import default_model_spec
    from plait.threads import Threads

    with cli_errors():
        text = _read_task(task)
        if not text.strip():
            raise UsageError("the task is empty; say what the graph should work on")
        flags: dict[str, Any] = {
            "model": model,
            "model_for": parse_model_for(model_for),
            "base_url": base_url,
            "fallbacks": fallback_model,
            "options": parse_graph_options(graph, set_),
            "max_tokens": max_tokens,
            "max_cost": max_cost,
            "max_calls": max_calls,
            "approve_before": approve_before,
        }
        # The file is read before anything touches the database: a bad one changes nothing.
        settings, sources = effective(flags, find_config(config))
        # Only the flags' roles: a plait.toml [roles] table is shared by every graph. An
        # authored graph's roles cannot be known before it runs.
        if not is_reference(graph):
            check_roles(graph, settings.options, flags["model_for"])
        notice = default_model_spec()[1] if sources["model"] == "default" else None
        progress = Progress(quiet=quiet, notice=notice)
        extra = _read_input(input_) if input_ else None
        _finish(
            lambda: Threads(db).run(
                graph,
                text,
                settings=settings,
                thread_id=thread,
                on_event=progress,
                input=extra,
            ),
            progress,
            json_,
        )


def resume_command(
    thread_id: Annotated[
        str,
        typer.Argument(help="The thread to continue (see `plait threads`).", show_default=False),
    ],
    model: ResumeModelOpt = None,
    model_for: ModelForOpt = [],  # noqa: B006
    base_url: BaseUrlOpt = None,
    fallback_model: FallbackOpt = [],  # noqa: B006
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_calls: MaxCallsOpt = None,
    set_: RunSetOpt = [],  # noqa: B006
    approve: Annotated[
        bool, typer.Option("--approve", help="Approve what a waiting thread asks about.")
    ] = False,
    reject: Annotated[
        bool, typer.Option("--reject", help="Reject it (add --feedback to say why).")
    ] = False,
    feedback: Annotated[
        str | None,
        typer.Option(
            "--feedback", help="Why it was rejected, or what to change.", show_default=False
        ),
    ] = None,
    answer: Annotated[
        str | None, typer.Option("--answer", help="Answer an agent's question.", show_default=False)
    ] = None,
    db: DbOpt = None,
    config: ResumeConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Finish a failed, interrupted or killed run with the settings it was started with.

    Finished steps and finished parallel branches are not run again. Model, fallback, budget
    and --set run-option flags override the stored settings (a stopped budget needs a larger
    one). A thread
    waiting for a person needs --approve, --reject [--feedback TEXT] or --answer TEXT.
    The config file applies to new runs only; a model flag may name its profiles and pools.
    """
    from plait.config import find_config, load_config
    from plait.graphs.registry import parse_run_options
    from plait.nodes.human import Decision
    from plait.threads import Threads

    with cli_errors():
        overrides = {
            "model": model,
            "model_for": parse_model_for(model_for) or None,
            "base_url": base_url,
            "fallbacks": fallback_model or None,
            "max_tokens": max_tokens,
            "max_cost": max_cost,
            "max_calls": max_calls,
            "options": parse_run_options(set_) or None,
        }
        path = find_config(config)
        from_file = load_config(path) if path else {}  # a bad file is an error here too
        if from_file and (model or model_for or fallback_model):
            overrides.update(_definitions(from_file, thread_id, db))
        if approve and reject:
            raise UsageError("--approve and --reject contradict each other; give one")
        decision = None
        if approve or reject or answer is not None or feedback is not None:
            decision = Decision(
                approved=True if approve else False if reject else None,
                feedback=feedback,
                answer=answer,
            )
        progress = Progress(quiet=quiet)
        _finish(
            lambda: Threads(db).resume(
                thread_id, overrides=overrides, decision=decision, on_event=progress
            ),
            progress,
            json_,
        )


def _read_task(task: str) -> str:
    """The task argument, or stdin for '-', read no further than the task limit."""
    from plait.inputs import MAX_TASK_BYTES, byte_limit, too_large

    if task != "-":
        return task  # runner.run checks its size and encoding, for Python callers too
    limit = byte_limit(MAX_TASK_BYTES)
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise too_large("the task on stdin", f"more than {limit:,}", MAX_TASK_BYTES)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the task is not valid UTF-8; give it as UTF-8 text") from None


def _read_input(path: Path) -> str:
    """The --input file as text: its size checked before it is read, binary refused."""
    from plait.inputs import MAX_INPUT_BYTES, byte_limit, too_large

    limit, what = byte_limit(MAX_INPUT_BYTES), f"--input {path}"
    size = path.stat().st_size
    if size > limit:
        raise too_large(what, f"{size:,}", MAX_INPUT_BYTES)
    with path.open("rb") as file:
        data = file.read(limit + 1)  # a pipe, or a file still growing, stops here too
    if len(data) > limit:
        raise too_large(what, f"more than {limit:,}", MAX_INPUT_BYTES)
    if b"\0" in data:
        raise UsageError(f"{what} is binary (it has a NUL byte); give a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "give a UTF-8 text file"
        ) from None


def _definitions(from_file: dict[str, Any], thread_id: str, db: str | None) -> dict[str, Any]:
    """The file's profiles, pools and prices the thread lacks, merged under its own, so a
    resume flag can name a profile added to the file since the thread started.
    """
    from plait.threads import Threads

    record = asyncio.run(Threads(db).get(thread_id))
    if record is None:
        return {}  # unknown thread: resume says so
    settings = record.settings
    merged = {}
    for name in ("models", "pools", "prices"):
        have = settings.get(name) or {}
        if set(from_file.get(name, {})) - set(have):
            merged[name] = {**from_file.get(name, {}), **have}  # the thread's own win
    return merged


def _finish(
    start: Callable[[], Coroutine[Any, Any, Outcome]], progress: Progress, json_: bool
) -> None:
    from plait.checkpoints.threads import ThreadStatus
    from plait.runner import BudgetStopped, RunFailed

    try:
        outcome = asyncio.run(start())
    except RunFailed as exc:
        progress.close()
        budget = exc.exit_code == ExitCode.BUDGET
        label = "[yellow]stopped:[/]" if budget else "[red]error:[/]"
        err.print(f"{label} {escape(str(exc))}")
        hint = (
            f" with a larger budget: --max-{exc.limit} N" if isinstance(exc, BudgetStopped) else ""
        )
        err.print(f"the thread is saved; continue it{hint}: plait resume {exc.thread_id}")
        if json_:
            print_json(
                {
                    "thread_id": exc.thread_id,
                    "status": ThreadStatus.BUDGET if budget else ThreadStatus.FAILED,
                    "error": str(exc),
                }
            )
        raise typer.Exit(code=int(exc.exit_code)) from None
    except KeyboardInterrupt:
        progress.close()
        if progress.thread_id:
            err.print(f"interrupted; continue with: plait resume {progress.thread_id}")
            if json_:
                print_json({"thread_id": progress.thread_id, "status": ThreadStatus.INTERRUPTED})
        raise typer.Exit(code=int(ExitCode.INTERRUPTED)) from None
    finally:
        progress.close()
    _show(outcome, json_, progress.quiet)


def _show(outcome: Outcome, json_: bool, quiet: bool) -> None:
    from plait.checkpoints.threads import ThreadStatus

    if json_:
        print_json(outcome.as_json())
    elif outcome.result is not None and outcome.status == ThreadStatus.DONE:
        typer.echo(outcome.result)
    for spec, calls in (outcome.fallback_calls or {}).items():
        err.print(f"[yellow]note:[/] fallback model {escape(spec)} served {calls} call(s)")
    if outcome.waiting:
        _show_waiting(outcome)
        raise typer.Exit(code=int(ExitCode.WAITING))
    if not quiet:
        tokens = total_tokens(outcome.usage)
        summary = (
            f"thread [cyan]{escape(outcome.thread_id)}[/] · {outcome.status} · {tokens:,} tokens"
        )
        if outcome.stop_reason:
            summary += f" · {escape(outcome.stop_reason)}"
        if outcome.errors:
            summary += f" · [yellow]{len(outcome.errors)} branch error(s)[/]"
        err.print(summary)


def _show_waiting(outcome: Outcome) -> None:
    assert outcome.waiting is not None  # called only for a thread that waits
    before = ", ".join(outcome.waiting["before"])
    err.print(f"[yellow]waiting for a person[/] before {escape(before)}")
    for question in outcome.waiting["questions"]:
        details = question if isinstance(question, dict) else {"question": question}
        for key, value in details.items():
            text = str(value) if len(str(value)) <= 500 else str(value)[:500] + "…"
            err.print(f"  {escape(key)}: {escape(text)}")
    choices = "--approve | --reject --feedback TEXT"
    if outcome.waiting["questions"]:  # an agent asked: it may want an answer instead
        choices += " | --answer TEXT"
    err.print(f"continue with: plait resume {escape(outcome.thread_id)} {choices}")
