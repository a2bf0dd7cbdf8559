"""CLI names of the prebuilt graphs (name -> ``module:attr``) and the run options.

A graph's summary, options, types, defaults and help all come from its factory (docstring and
typed signature; see ``plait.graphs.options``). Listing the graphs reads the docstrings with
``ast`` and imports no graph module, so ``plait graphs`` starts fast. A new pattern is one
module in this package plus one entry here.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plait.errors import GraphSetupError, ModelSpecError, OptionError


@dataclass(frozen=True)
class Option:
    """One run option as ``--set``, ``plait.toml`` and ``plait graphs show`` see it, derived
    from its field in ``plait.graphs.options.RunOptions`` (the declaration).
    """

    name: str
    type: str  # "int", "float", "bool", "str", "list" (comma-separated) or "json"
    default: Any
    help: str
    minimum: float | None = None

    def parse(self, raw: str) -> Any:
        """Convert the command-line text to this option's type, checked by ``RunOptions``.

        Raises:
            OptionError: the value does not fit the type or range.
        """
        from plait.graphs.options import parse_run_option

        return parse_run_option(self.name, raw)

    def type_label(self) -> str:
        from plait.graphs.options import RunOptions, type_label

        return type_label(RunOptions.model_fields[self.name].annotation)


@functools.cache
def _run_options() -> tuple[Option, ...]:
    # Built on first use: pydantic is not imported to list the graphs.
    from plait.graphs.options import RunOptions, _kind, bounds

    options = []
    for name, field in RunOptions.model_fields.items():
        limits = bounds(field)
        options.append(
            Option(
                name,
                _kind(field.annotation),
                field.get_default(call_default_factory=True),
                field.description or "",
                minimum=limits.get("ge", limits.get("gt")),
            )
        )
    return tuple(options)


def __getattr__(name: str) -> Any:
    # RUN_OPTIONS: the options every graph accepts; the runner applies them, not the factory.
    if name == "RUN_OPTIONS":
        return _run_options()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_run_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs of run options only (what ``plait resume --set`` may change).

    Raises:
        OptionError: malformed pair, a key that is not a run option, or a bad value.
    """
    known = {option.name: option for option in _run_options()}
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key.strip() not in known:
            raise OptionError(
                f"resume --set takes run options only ({', '.join(known)}), got {pair!r}; "
                "a graph's own options are fixed when its thread starts"
            )
        parsed[key.strip()] = known[key.strip()].parse(raw)
    return parsed


@dataclass(frozen=True)
class GraphEntry:
    """A prebuilt graph: its CLI name and its factory; the factory declares everything else."""

    name: str
    factory: str  # "module:function"
    reads_input: bool = False  # whether the graph uses `plait run --input FILE`

    @property
    def summary(self) -> str:
        """The first paragraph of the factory's docstring, read without importing it."""
        return _summary(self.factory)

    def load_factory(self) -> Callable[..., Any]:
        module, _, attr = self.factory.partition(":")
        factory: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return factory

    def option_rows(self) -> list[dict[str, Any]]:
        """The graph's options then the run options: name, type, default, help, limits."""
        from plait.graphs.options import option_rows

        return option_rows(self.load_factory()) + run_option_rows()

    def parse_options(self, pairs: Iterable[str]) -> dict[str, Any]:
        """Parse ``key=value`` pairs into typed values (only the keys given), read and checked
        by the factory's signature.

        Raises:
            OptionError: malformed pair, unknown key, or bad value; the message lists the
                valid keys and their types.
        """
        from plait.graphs.options import parse_pairs

        return parse_pairs(
            self.load_factory(), pairs, label=f"graph {self.name!r}", run_options=_run_options()
        )


def run_option_rows() -> list[dict[str, Any]]:
    """The run options as ``plait graphs show`` lists them."""
    rows = []
    for o in _run_options():
        row = {"name": o.name, "type": o.type_label(), "default": o.default, "help": o.help}
        if o.minimum is not None:
            row["ge"] = o.minimum
        rows.append(row)
    return rows


@functools.cache
def _summary(factory: str) -> str:
    # ast, not import: listing the graphs must not import every pattern and LangGraph.
    module, _, attr = factory.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == attr:
            doc = ast.get_docstring(node) or ""
            return " ".join(doc.split("\n\n")[0].split()).rstrip(".")
    return ""


GRAPHS: dict[str, GraphEntry] = {
    entry.name: entry
    for entry in (
        GraphEntry("review", "plait.graphs.review:create_review_graph"),
        GraphEntry("orchestrator", "plait.graphs.orchestrator:create_orchestrator_graph"),
        GraphEntry("pipeline", "plait.graphs.pipeline:create_pipeline_graph"),
        GraphEntry("blackboard", "plait.graphs.blackboard:create_blackboard_graph"),
        GraphEntry("auction", "plait.graphs.auction:create_auction_graph"),
        GraphEntry("supervisor", "plait.graphs.supervisor:create_supervisor_graph"),
        GraphEntry("router", "plait.graphs.router:create_router_graph"),
        GraphEntry("swarm", "plait.graphs.swarm:create_swarm_graph"),
        GraphEntry("debate", "plait.graphs.debate:create_debate_graph"),
        GraphEntry("perspectives", "plait.graphs.perspectives:create_perspectives_graph"),
        GraphEntry("consensus", "plait.graphs.consensus:create_consensus_graph"),
        GraphEntry("dag", "plait.graphs.dag:create_dag_graph"),
        GraphEntry(
            "map-reduce", "plait.graphs.map_reduce:create_map_reduce_graph", reads_input=True
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


# The roles (the names `--model-for ROLE=SPEC` takes) each prebuilt graph asks a model for,
# given its options with the factory's defaults filled in. Fixed roles are written here; the
# rest come from the options that name them. tests/test_input_limits.py runs every graph and
# checks that each role it asks is listed, so this cannot drift from the graphs.
def _named(items: Iterable[Any]) -> list[str]:
    # Stages and sources are names, objects with a .name, or (from --set JSON) mappings.
    return [
        i if isinstance(i, str) else i["name"] if isinstance(i, dict) else i.name for i in items
    ]


def _stage_roles(o: dict[str, Any]) -> set[str]:
    if o["spec"]:
        from plait.graphs.pipeline import load_spec

        stages = load_spec(o["spec"])
        return {s.name for s in stages} | {s.fallback for s in stages if s.fallback}
    return set(_named(o["stages"]))


def _debaters(o: dict[str, Any]) -> set[str]:
    from plait.graphs.debate import _stances  # the same numbering the graph uses

    return set(_stances(o["debaters"], o["positions"]))


_ROLES: dict[str, Callable[[dict[str, Any]], set[str]]] = {
    "review": lambda o: (
        {"researcher", "outliner", "writer", "reviser"}
        | (set() if o["human_review"] else {"reviewer"})
    ),
    "orchestrator": lambda o: {"planner", "synthesizer", *o["roster"]},
    "dag": lambda o: {"planner", "synthesizer", *o["roster"]},
    "pipeline": _stage_roles,
    "blackboard": lambda o: (
        set(_named(o["sources"]))
        | {"merge": {"merger"}, "escalate": {"controller"}}.get(o["conflict_policy"], set())
    ),
    "auction": lambda o: (
        {*o["bidders"], *([o["fallback"]] if o["fallback"] else [])}
        | ({"planner", "synthesizer"} if o["decompose"] else set())
    ),
    "supervisor": lambda o: {"supervisor", "synthesizer", *o["specialists"]},
    "router": lambda o: {"classifier", *o["routes"]},
    "swarm": lambda o: set(o["agents"]),
    "debate": lambda o: {"judge"} | _debaters(o),
    "perspectives": lambda o: (
        {"chief_architect"} | {f"{p.strip().lower()}_expert" for p in o["perspectives"]}
    ),
    "consensus": lambda o: {"voter"},  # one role for every voter
    "map-reduce": lambda o: {"mapper", "reducer"},
}


def graph_roles(name: str, options: dict[str, Any]) -> set[str] | None:
    """The roles prebuilt graph ``name`` asks a model for with ``options``.

    None when they cannot be told: an options value the graph itself will refuse (building it
    says what is wrong), or a graph with no entry in the role table.
    """
    import inspect

    factory = get_entry(name).load_factory()
    defaults = {
        key: p.default
        for key, p in inspect.signature(factory).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    try:
        return _ROLES[name]({**defaults, **options})
    except (KeyError, TypeError, AttributeError, ValueError):  # GraphSetupError is a ValueError
        return None


def check_roles(name: str, options: dict[str, Any], roles: Iterable[str]) -> None:
    """Refuse a ``--model-for`` role that prebuilt graph ``name`` never asks: a typo there
    would otherwise be ignored and the run would use the default model without a word.

    Raises:
        ModelSpecError: naming the role and listing the graph's roles.
    """
    known = graph_roles(name, options)
    if known is None:
        return
    unknown = sorted(set(roles) - known)
    if unknown:
        raise ModelSpecError(
            f"graph {name!r} has no role {unknown[0]!r} for --model-for; "
            f"its roles with these options: {', '.join(sorted(known))}"
        )
