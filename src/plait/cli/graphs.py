"""``plait graphs``: the prebuilt graphs, their topology and options."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from plait.cli.options import JsonOpt
from plait.cli.output import cli_errors, out, print_json
from plait.graphs.registry import GRAPHS, get_entry, run_option_rows

app = typer.Typer(
    no_args_is_help=False, help="List the prebuilt graphs and show their shape and options."
)


def _option_rows(name: str) -> list[dict[str, Any]]:
    """A graph's options then the run options, from the factory's signature (a prebuilt
    graph's, or an authored ``file.py:attr`` / ``module:attr`` factory's).
    """
    if name in GRAPHS:
        return GRAPHS[name].option_rows()
    from plait.graphs.loader import _import_reference, is_reference
    from plait.graphs.options import option_rows

    if not is_reference(name):
        get_entry(name)  # says the name is unknown
    target = _import_reference(name)
    own = option_rows(target) if callable(target) and not _is_graph(target) else []
    return own + run_option_rows()


def _is_graph(target: object) -> bool:
    from langgraph.graph import StateGraph
    from langgraph.pregel import Pregel

    return isinstance(target, StateGraph | Pregel)


def _limits(row: dict[str, Any]) -> str:
    signs = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    parts = [f"{sign} {row[key]:g}" for key, sign in signs if key in row]
    if "min_length" in row:
        parts.append(f"at least {row['min_length']} item(s)")
    return "".join(f", {part}" for part in parts)


@app.callback(invoke_without_command=True)
def list_graphs(
    ctx: typer.Context,
    json_: JsonOpt = False,
) -> None:
    """List the prebuilt graphs with a one-line summary."""
    if ctx.invoked_subcommand:
        return
    if json_:
        print_json(
            [
                {"name": e.name, "summary": e.summary, "options": _option_rows(e.name)}
                for e in GRAPHS.values()
            ]
        )
        return
    table = Table("graph", "what it does", box=None, pad_edge=False)
    for entry in GRAPHS.values():
        table.add_row(f"[bold]{entry.name}[/]", entry.summary)
    out.print(table)
    out.print("\n`plait graphs show NAME` shows a graph's topology and options.")


@app.command("show")
def show(
    name: Annotated[
        str,
        typer.Argument(
            help="A prebuilt graph, or path/file.py:attr or module:attr.", show_default=False
        ),
    ],
    ascii_: Annotated[
        bool, typer.Option("--ascii", help="Draw the graph as text instead of mermaid.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Print a graph's topology (mermaid, or an ASCII drawing) and the options --set accepts."""
    from plait.graphs.loader import build_graph

    with cli_errors():
        drawing = build_graph(name, {}, None).get_graph()
        text = drawing.draw_ascii() if ascii_ else drawing.draw_mermaid()
        rows = _option_rows(name)
        if json_:
            print_json({"name": name, "mermaid": drawing.draw_mermaid(), "options": rows})
            return
        out.print(text, markup=False)
        out.print("options (--set key=value):")
        for row in rows:
            default = row["default"]
            if isinstance(default, list) and all(isinstance(d, str) for d in default):
                shown = ",".join(default)
            elif isinstance(default, list | dict):
                shown = json.dumps(default)
            else:
                shown = default
            about = f"{row['type']}{_limits(row)}; default {shown}"
            text = (
                f"  {row['name']}: {row['help']} ({about})"
                if row["help"]
                else f"  {row['name']}: {about}"
            )
            out.print(text, markup=False)
