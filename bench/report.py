"""The table: measurement, plait, baseline, ratio, goal, met; and the machine it ran on."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def figure(value: float, unit: str) -> str:
    if unit in ("s", "s wall"):
        return f"{value:.3f} s"
    if unit == "ms/call" or unit == "ms":
        return f"{value:.3f} ms"
    if unit == "KB":
        return f"{value:,.0f} KB"
    if unit == "workflows/s":
        return f"{value:,.1f}/s"
    if unit == "repeated calls":
        return f"{value:g} calls"
    return f"{value:.3g}"


def print_table(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=200)
    info = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    size = "quick" if report["quick"] else "full"
    table = Table(
        title=f"plait benchmarks ({size}; {report['seconds']:.0f} s)",
        caption=f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"SQLite {info['sqlite']}; {versions}",
    )
    for header, justify in (
        ("measurement", "left"),
        ("plait", "right"),
        ("baseline", "right"),
        ("ratio", "right"),
        ("goal", "left"),
        ("met", "center"),
        ("notes", "left"),
    ):
        table.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=header != "notes",
            overflow="fold",
        )
    for measured in report["measurements"].values():
        for row in measured["rows"]:
            met = {True: "[green]met[/]", False: "[red]not met[/]", None: ""}[row["met"]]
            table.add_row(
                row["name"],
                figure(row["plait"], row["unit"]),
                f"{figure(row['baseline'], row['unit'])} ({row['baseline_label']})",
                f"{row['ratio']:.3g} {row['ratio_label']}",
                row["goal"],
                met,
                str(row["extra"].get("note", "")),
            )
        table.add_section()
    console.print(table)


def markdown(report: dict[str, Any]) -> str:
    """The same table as Markdown, for BENCHMARKS.md."""
    lines = [
        "| measurement | plait | baseline | ratio | goal | met | notes |",
        "|---|--:|--:|--:|---|:-:|---|",
    ]
    for measured in report["measurements"].values():
        for row in measured["rows"]:
            met = {True: "met", False: "**not met**", None: ""}[row["met"]]
            baseline = f"{figure(row['baseline'], row['unit'])} ({row['baseline_label']})"
            ratio = f"{row['ratio']:.3g} {row['ratio_label']}"
            note = str(row["extra"].get("note", "")).replace("|", "/")
            cells = [
                row["name"],
                figure(row["plait"], row["unit"]),
                baseline,
                ratio,
                row["goal"],
                met,
                note,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """``python -m bench.report FILE [--markdown]``: print a saved run's table again."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("file", type=Path, help="a --json file written by python -m bench")
    parser.add_argument("--markdown", action="store_true", help="as a Markdown table")
    args = parser.parse_args()
    report = json.loads(args.file.read_text())
    if args.markdown:
        print(markdown(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
