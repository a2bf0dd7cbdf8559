"""The ``plait`` command: nouns with verbs, the same flags everywhere, documented exit codes."""

from __future__ import annotations

import typer

from plait.cli import config, graphs, threads
from plait.cli.doctor import doctor_command
from plait.cli.run import resume_command, run_command

HELP = """Multi-agent orchestration patterns as resumable LangGraph graphs.

\b
  plait graphs                         list the prebuilt graphs
  plait run review "Explain CAP"       run one (result on stdout, progress on stderr)
  plait resume ID                      finish a failed, interrupted or killed run
  plait threads                        list saved threads
  plait doctor                         check every endpoint the settings name

\b
Exit codes: 0 done · 1 failed (resumable) · 2 bad usage · 3 waiting for a human ·
4 budget exhausted · 5 unknown or finished thread · 6 database unusable · 130 interrupted.
"""

app = typer.Typer(
    name="plait",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold API keys
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("run", no_args_is_help=True)(run_command)
app.command("resume", no_args_is_help=True)(resume_command)
app.command("doctor")(doctor_command)
app.add_typer(graphs.app, name="graphs")
app.add_typer(config.app, name="config")
app.add_typer(threads.app, name="threads")


def main() -> None:
    """Console-script entry point."""
    app()
