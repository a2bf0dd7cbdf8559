"""``plait graphs``: the prebuilt graphs, their topology and options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from plait.cli.options import JsonOpt
from plait.cli.output import cli_errors, out, print_json
from plait.graphs.registry import GRAPHS, RUN_OPTIONS, get_entry

app = typer.Typer(
    no_args_is_help=False, help="List the prebuilt graphs and show their shape and options."
)


def _option_rows(name: str) -> list[dict]:
    options = get_entry(name).all_options() if name in GRAPHS else RUN_OPTIONS
    return [
        {"name": o.name, "type": o.type_label(), "default": o.default, "help": o.help}
        for o in options
    ]


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
            shown = ",".join(default) if isinstance(default, list) else default
            out.print(
                f"  {row['name']}: {row['help']} ({row['type']}; default {shown})", markup=False
            )
