"""Argument checks the graph factories share, so the same mistake gets the same message.

A single option's type, range or choices is declared in the factory's signature and checked by
``plait.graphs.options``; these are the rules across options or over names. Each check
raises ``GraphSetupError`` naming the bad value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from langgraph.graph import END, START

from plait.errors import GraphSetupError

# Names users give to nodes and roles: one rule, so that every graph accepts the same names.
NODE_NAME = re.compile(r"[A-Za-z][\w-]*")


def check_subtask_range(min_subtasks: int, max_subtasks: int) -> None:
    """Check that a plan's bounds allow at least one subtask and do not cross."""
    if not 1 <= min_subtasks <= max_subtasks:
        raise GraphSetupError(
            f"need 1 <= min_subtasks <= max_subtasks, got {min_subtasks} and {max_subtasks}"
        )


def check_unique(what: str, names: Sequence[str]) -> None:
    """Check that no two of ``names`` (the names of ``what``s) are the same."""
    if len(set(names)) != len(names):
        raise GraphSetupError(f"{what} names must be unique, got {', '.join(names)}")


def check_node_names(what: str, names: Sequence[str], reserved: Iterable[str]) -> tuple[str, ...]:
    """Names that each become a graph node: non-empty, unique, plain, and not ``reserved``.

    Raises:
        GraphSetupError: naming the bad value and what is allowed.
    """
    names, reserved = tuple(names), set(reserved) | {START, END}
    if not names:
        raise GraphSetupError(f"need at least one {what}")
    for name in names:
        if not NODE_NAME.fullmatch(name) or name in reserved:
            raise GraphSetupError(
                f"invalid {what} name {name!r}: use letters, digits, _ or -, starting with a "
                f"letter, and none of {', '.join(sorted(reserved))}"
            )
    check_unique(what, names)
    return names
