"""What the CLI shows: results on stdout, progress and errors on stderr, and exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from plait.errors import ExitCode, PlaitError
from plait.secrets import redact, scrub


class _Redacting(Console):
    """A console that hides keys in every string it prints: errors, notices and thread
    details quote what endpoints said, and an endpoint may echo the key it was sent.
    """

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(redact(o) if isinstance(o, str) else o for o in objects), **kwargs)


# Results go to stdout untouched (pipes and --json need plain text); everything else to stderr.
err = _Redacting(stderr=True, highlight=False, soft_wrap=True)
out = _Redacting(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON document on stdout, keys hidden (string by string, so it stays valid JSON)."""
    typer.echo(json.dumps(scrub(data), indent=2, default=str))


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn plait's errors into one line on stderr and the documented exit code.

    Anything else is a bug in plait or in a user's graph: one line too, and the traceback
    only with ``PLAIT_DEBUG=1`` (locals can hold API keys, so never by default).
    """
    try:
        yield
    except PlaitError as exc:
        if os.environ.get("PLAIT_DEBUG"):
            raise
        err.print(f"[red]error:[/] {_escape(str(exc))}")
        raise typer.Exit(code=int(exc.exit_code)) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("PLAIT_DEBUG"):
            raise
        err.print(
            f"[red]internal error:[/] {type(exc).__name__}: {_escape(str(exc))} "
            "(PLAIT_DEBUG=1 shows the traceback)"
        )
        raise typer.Exit(code=int(ExitCode.FAILED)) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(redact(text.splitlines()[0]) if text else text)


def is_tty() -> bool:
    return sys.stderr.isatty()
