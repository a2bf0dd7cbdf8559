"""What a run starts from, checked and made stable before anything is stored: the task and
input within their size limits, the thread's name, and absolute paths for the files a
thread's settings name.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from plait.errors import UsageError
from plait.graphs.loader import is_reference
from plait.settings import RunSettings

# Every checkpoint of a thread stores its task, and the first ones its input: an unbounded one
# grows the database by its size times the number of steps. Both limits are bytes of UTF-8.
MAX_TASK_BYTES = ("PLAIT_MAX_TASK_BYTES", 1_000_000)
MAX_INPUT_BYTES = ("PLAIT_MAX_INPUT_BYTES", 10_000_000)


def byte_limit(which: tuple[str, int]) -> int:
    """The limit ``MAX_TASK_BYTES`` or ``MAX_INPUT_BYTES`` names: its variable, else its default.

    Raises:
        UsageError: the variable is not a positive whole number.
    """
    name, default = which
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise UsageError(f"{name} must be a positive whole number of bytes, got {raw!r}")
    return int(raw)


def too_large(what: str, size: str, which: tuple[str, int]) -> UsageError:
    """The error for a task or input over its limit (``size`` as the caller knows it)."""
    return UsageError(
        f"{what} is {size} bytes, over the limit of {byte_limit(which):,} ({which[0]}): every "
        "checkpoint keeps a copy; shorten it or raise the limit"
    )


def check_text(what: str, text: str, which: tuple[str, int]) -> None:
    """Refuse text that is not valid UTF-8 (lone surrogates: what Python makes of undecodable
    bytes in argv) or larger than its limit, before anything is stored.

    Raises:
        UsageError: naming ``what``.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8; give it as UTF-8 text") from None
    if size > byte_limit(which):
        raise too_large(what, f"{size:,}", which)


def check_thread_id(thread_id: str) -> str:
    """``thread_id`` if it is a name plait can store and print.

    Raises:
        UsageError: not 1-128 letters, digits, '_', '-' or '.'.
    """
    if not re.fullmatch(r"[\w.-]{1,128}", thread_id):
        raise UsageError(f"thread id {thread_id!r} must be 1-128 letters, digits, '_', '-' or '.'")
    return thread_id


def stable_paths(settings: RunSettings) -> RunSettings:
    """``settings`` with the files they name (a pipeline spec, a pool file) made absolute,
    so that `plait resume` works from any directory.
    """

    def absolute(spec: str) -> str:
        provider, _, name = spec.partition(":")
        return (
            f"pool:{Path(name).resolve()}" if provider == "pool" and Path(name).is_file() else spec
        )

    options = dict(settings.options)
    if isinstance(options.get("spec"), str) and options["spec"] and Path(options["spec"]).is_file():
        options["spec"] = str(Path(options["spec"]).resolve())
    return replace(
        settings,
        model=absolute(settings.model),
        model_for={role: absolute(spec) for role, spec in settings.model_for.items()},
        fallbacks=[absolute(spec) for spec in settings.fallbacks],
        options=options,
    )


def stable_reference(graph: str) -> str:
    """``graph`` with a file reference made absolute, so `plait resume` works anywhere."""
    if is_reference(graph):
        where, _, attr = graph.rpartition(":")
        if where.endswith(".py") and Path(where).is_file():
            return f"{Path(where).resolve()}:{attr}"
    return graph
