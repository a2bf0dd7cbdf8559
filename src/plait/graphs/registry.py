"""CLI names of the prebuilt graphs, their summaries and the options ``--set`` accepts.

Plain data: listing graphs imports no graph module, so ``plait graphs`` starts fast. A new
pattern is one module in this package plus one entry here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from plait.errors import GraphSetupError, OptionError


@dataclass(frozen=True)
class Option:
    """One ``--set key=value`` option: its type, default and meaning."""

    name: str
    type: str  # "int", "float", "bool", "str", "list" (comma-separated) or "json"
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    def parse(self, raw: str) -> Any:
        """Convert the command-line text to this option's type.

        Raises:
            OptionError: the value does not fit the type, range or choices.
        """
        try:
            value = _PARSERS[self.type](raw)
        except (ValueError, json.JSONDecodeError):
            raise OptionError(
                f"option {self.name!r} takes {self.type_label()}, got {raw!r}"
            ) from None
        if self.choices and value not in self.choices:
            raise OptionError(
                f"option {self.name!r} must be one of {', '.join(self.choices)}; got {raw!r}"
            )
        if self.minimum is not None and value < self.minimum:
            raise OptionError(f"option {self.name!r} must be at least {self.minimum:g}; got {raw!r}")
        return value

    def type_label(self) -> str:
        if self.choices:
            return "one of " + "|".join(self.choices)
        return {
            "list": "a comma-separated list",
            "json": "JSON",
            "bool": "true or false",
            "str": "text",
        }.get(self.type, f"an {self.type}" if self.type == "int" else f"a {self.type}")


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)


def _list(raw: str) -> list[str]:
    items = [part.strip() for part in raw.split(",") if part.strip()]
    if not items:
        raise ValueError(raw)
    return items


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _bool,
    "str": str,
    "list": _list,
    "json": json.loads,
}

# Options every graph accepts; the runner applies them, not the factory.
RUN_OPTIONS = (
    Option("max_concurrency", "int", 32, "most branches running at once", minimum=1),
)


@dataclass(frozen=True)
class GraphEntry:
    """A prebuilt graph: CLI name, one-line summary, factory path and its options."""

    name: str
    summary: str
    factory: str  # "module:function"
    options: tuple[Option, ...] = field(default_factory=tuple)

    def load_factory(self) -> Callable[..., Any]:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)

    def all_options(self) -> tuple[Option, ...]:
        return self.options + RUN_OPTIONS

    def parse_options(self, pairs: Iterable[str]) -> dict[str, Any]:
        """Parse ``key=value`` pairs into typed values (only the keys given).

        Raises:
            OptionError: malformed pair, unknown key, or bad value; the message lists the
                valid keys and their types.
        """
        known = {opt.name: opt for opt in self.all_options()}
        parsed: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise OptionError(f"--set takes key=value, got {pair!r}")
            if key not in known:
                valid = ", ".join(f"{o.name} ({o.type_label()})" for o in known.values())
                raise OptionError(f"graph {self.name!r} has no option {key!r}; valid: {valid}")
            parsed[key] = known[key].parse(raw)
        return parsed


_ROSTER = "researcher,analyst,coder,writer,reviewer,qa_tester"
_ON_ERROR = Option(
    "on_branch_error",
    "str",
    "fail",
    "a failed branch stops the run (fail) or is recorded and shown to the synthesizer (continue)",
    choices=("fail", "continue"),
)

GRAPHS: dict[str, GraphEntry] = {
    entry.name: entry
    for entry in (
        GraphEntry(
            "review",
            "research, outline and write, then review and revise until approved",
            "plait.graphs.review:create_review_graph",
            (Option("max_iterations", "int", 3, "most review rounds", minimum=1),),
        ),
        GraphEntry(
            "orchestrator",
            "a planner splits the task, workers run the subtasks in parallel, a synthesizer joins them",
            "plait.graphs.orchestrator:create_orchestrator_graph",
            (
                Option("min_subtasks", "int", 3, "fewest subtasks the plan may have", minimum=1),
                Option("max_subtasks", "int", 7, "most subtasks the plan may have", minimum=1),
                Option("roster", "list", _ROSTER.split(","), "worker roles the planner may assign"),
                _ON_ERROR,
            ),
        ),
        GraphEntry(
            "pipeline",
            "stages run in order, each on the previous stage's output (extract, transform, format)",
            "plait.graphs.pipeline:create_pipeline_graph",
            (
                Option("stages", "list", ["extract", "transform", "format"], "stage roles, in order"),
                Option("spec", "str", "", "a JSON file of stages: name, instructions, require, fallback"),
                Option("attempts", "int", 2, "calls per stage before its fallback", minimum=1),
            ),
        ),
    )
}


def get_entry(name: str) -> GraphEntry:
    """The registry entry for ``name``.

    Raises:
        GraphSetupError: unknown name; the message lists the prebuilt graphs.
    """
    try:
        return GRAPHS[name]
    except KeyError:
        raise GraphSetupError(
            f"unknown graph {name!r}; prebuilt graphs: {', '.join(GRAPHS)} "
            "(or give path/to/file.py:attr or package.module:attr)"
        ) from None
