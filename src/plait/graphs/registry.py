"""CLI names of the prebuilt graphs, their summaries and the options ``--set`` accepts.

Plain data: listing graphs imports no graph module, so ``plait graphs`` starts fast. A new
pattern is one module in this package plus one entry here.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from plait.errors import GraphSetupError, ModelSpecError, OptionError


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
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"option {self.name!r} takes a finite number, got {raw!r}")
        if self.choices and value not in self.choices:
            raise OptionError(
                f"option {self.name!r} must be one of {', '.join(self.choices)}; got {raw!r}"
            )
        if self.minimum is not None and value < self.minimum:
            raise OptionError(
                f"option {self.name!r} must be at least {self.minimum:g}; got {raw!r}"
            )
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
    Option("max_concurrency", "int", 256, "most branches running at once", minimum=1),
    Option("timeout", "float", 120.0, "seconds one model call may take", minimum=0.001),
    Option("role_timeouts", "list", [], "per-role call timeouts, e.g. planner=30,coder=300"),
    Option("retries", "int", 2, "retries of a failed model call (429, 5xx, timeout)", minimum=0),
)


def parse_run_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs of run options only (what ``plait resume --set`` may change).

    Raises:
        OptionError: malformed pair, a key that is not a run option, or a bad value.
    """
    known = {option.name: option for option in RUN_OPTIONS}
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
    """A prebuilt graph: CLI name, one-line summary, factory path and its options."""

    name: str
    summary: str
    factory: str  # "module:function"
    options: tuple[Option, ...] = field(default_factory=tuple)
    reads_input: bool = False  # whether the graph uses `plait run --input FILE`

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


# Options more than one graph takes, defined once so their text cannot drift apart.
_PLAN_OPTIONS = (
    Option("min_subtasks", "int", 3, "fewest subtasks the plan may have", minimum=1),
    Option("max_subtasks", "int", 7, "most subtasks the plan may have", minimum=1),
    Option(
        "roster",
        "list",
        ["researcher", "analyst", "coder", "writer", "reviewer", "qa_tester"],
        "worker roles the planner may assign",
    ),
)
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
            (
                Option("max_iterations", "int", 3, "most review rounds", minimum=1),
                Option("human_review", "bool", False, "a person gives the verdict at each review"),
            ),
        ),
        GraphEntry(
            "orchestrator",
            "a planner splits the task, workers run the subtasks in parallel, a synthesizer joins them",
            "plait.graphs.orchestrator:create_orchestrator_graph",
            (*_PLAN_OPTIONS, _ON_ERROR),
        ),
        GraphEntry(
            "pipeline",
            "stages run in order, each on the previous stage's output (extract, transform, format)",
            "plait.graphs.pipeline:create_pipeline_graph",
            (
                Option(
                    "stages", "list", ["extract", "transform", "format"], "stage roles, in order"
                ),
                Option(
                    "spec",
                    "str",
                    "",
                    "a JSON file of stages: name, instructions, require, fallback",
                ),
                Option("attempts", "int", 2, "calls per stage before its fallback", minimum=1),
            ),
        ),
        GraphEntry(
            "blackboard",
            "knowledge sources write entries on a shared board, in parallel rounds, until the goal entry is there",
            "plait.graphs.blackboard:create_blackboard_graph",
            (
                Option(
                    "sources",
                    "json",
                    [
                        {"name": "researcher", "needs": [], "writes": "facts"},
                        {"name": "analyst", "needs": ["facts"], "writes": "analysis"},
                        {"name": "critic", "needs": ["facts"], "writes": "risks"},
                        {
                            "name": "solver",
                            "needs": ["facts", "analysis", "risks"],
                            "writes": "solution",
                        },
                    ],
                    "JSON list of sources: name, needs, writes, optional instructions and priority",
                ),
                Option("goal", "str", "solution", "the board entry that ends the run"),
                Option(
                    "max_rounds",
                    "int",
                    5,
                    "most rounds before stopping without the goal",
                    minimum=1,
                ),
                Option(
                    "conflict_policy",
                    "str",
                    "priority",
                    "two writes to one entry in a round: higher priority wins, a merger combines them, or the controller picks",
                    choices=("priority", "merge", "escalate"),
                ),
            ),
        ),
        GraphEntry(
            "auction",
            "bidders bid for the task (or each subtask); the lowest cost per capability wins and does it",
            "plait.graphs.auction:create_auction_graph",
            (
                Option(
                    "bidders",
                    "list",
                    ["researcher", "analyst", "writer"],
                    "agents that bid for the work",
                ),
                Option("decompose", "bool", False, "split the task into subtasks and auction each"),
                Option("min_subtasks", "int", 2, "fewest subtasks a split may have", minimum=1),
                Option("max_subtasks", "int", 5, "most subtasks a split may have", minimum=1),
                Option(
                    "fallback",
                    "str",
                    "",
                    "agent that takes work nobody bid validly for (empty: none)",
                ),
            ),
        ),
        GraphEntry(
            "supervisor",
            "a supervisor plans, routes each step to a specialist, checks the result, then a synthesizer answers",
            "plait.graphs.supervisor:create_supervisor_graph",
            (
                Option(
                    "specialists",
                    "list",
                    ["research", "code", "review", "test"],
                    "the specialists the supervisor routes to",
                ),
                Option(
                    "max_steps",
                    "int",
                    10,
                    "most specialist steps before synthesizing what is done",
                    minimum=1,
                ),
            ),
        ),
        GraphEntry(
            "router",
            "a classifier picks a route with a confidence; that route's specialist answers",
            "plait.graphs.router:create_router_graph",
            (
                Option(
                    "routes",
                    "list",
                    ["data_query", "document_search", "code", "general"],
                    "route names, one specialist each",
                ),
                Option(
                    "min_confidence",
                    "float",
                    0.5,
                    "below this confidence (0 to 1) the fallback route answers",
                    minimum=0,
                ),
                Option(
                    "fallback",
                    "str",
                    "general",
                    "the route for an unknown label or a low confidence; one of routes",
                ),
            ),
        ),
        GraphEntry(
            "swarm",
            "peer agents answer, hand the task off with a summary, or ask each other for help",
            "plait.graphs.swarm:create_swarm_graph",
            (
                Option("agents", "list", ["triage", "researcher", "writer"], "the peer agents"),
                Option(
                    "start",
                    "str",
                    "",
                    "the agent that gets the task first (empty: the first agent)",
                ),
                Option(
                    "max_handoffs",
                    "int",
                    6,
                    "most handoffs before the active agent must answer",
                    minimum=0,
                ),
                Option(
                    "capacity",
                    "int",
                    1,
                    "help requests each agent serves at once; more are declined",
                    minimum=1,
                ),
            ),
        ),
        GraphEntry(
            "debate",
            "debaters argue distinct positions in parallel, rebut each other, and a judge decides",
            "plait.graphs.debate:create_debate_graph",
            (
                Option(
                    "debaters",
                    "int",
                    3,
                    "number of debaters (one per position when positions are given)",
                    minimum=2,
                ),
                Option(
                    "rounds",
                    "int",
                    1,
                    "rounds in all: 1 is opening arguments only, each extra one a rebuttal",
                    minimum=1,
                ),
                Option(
                    "positions",
                    "list",
                    [],
                    "the stance each debater argues (default: built-in distinct stances)",
                ),
                Option(
                    "on_branch_error",
                    "str",
                    "continue",
                    "a failed debater is named to the judge as missing (continue) "
                    "or stops the run (fail)",
                    choices=("fail", "continue"),
                ),
            ),
        ),
        GraphEntry(
            "perspectives",
            "technical, business, security and UX experts analyse in parallel; "
            "a chief architect synthesizes",
            "plait.graphs.perspectives:create_perspectives_graph",
            (
                Option(
                    "perspectives",
                    "list",
                    ["technical", "business", "security", "ux"],
                    "the perspectives, one expert each",
                ),
                Option(
                    "branch_timeout",
                    "float",
                    0.0,
                    "seconds each expert may take before it is left out (0: no limit)",
                    minimum=0,
                ),
                Option(
                    "on_branch_error",
                    "str",
                    "continue",
                    "a failed or late expert is named as missing (continue) "
                    "or stops the run (fail)",
                    choices=("fail", "continue"),
                ),
            ),
        ),
        GraphEntry(
            "consensus",
            "voters vote in parallel; the tally is re-voted until consensus or the last round",
            "plait.graphs.consensus:create_consensus_graph",
            (
                Option("voters", "int", 3, "number of voters", minimum=2),
                Option(
                    "method",
                    "str",
                    "majority",
                    "count votes against the quorum (majority) "
                    "or weigh them by confidence against the threshold (weighted)",
                    choices=("majority", "weighted"),
                ),
                Option(
                    "quorum",
                    "int",
                    0,
                    "votes the leader needs under majority (0: more than half the voters)",
                    minimum=0,
                ),
                Option(
                    "threshold",
                    "float",
                    0.6,
                    "share of the total confidence the leader needs under weighted (0 to 1)",
                    minimum=0,
                ),
                Option(
                    "rounds",
                    "int",
                    2,
                    "re-vote rounds after the first vote while there is no consensus",
                    minimum=0,
                ),
            ),
        ),
        GraphEntry(
            "dag",
            "subtasks with dependencies run in waves, each sent only its dependencies' outputs",
            "plait.graphs.dag:create_dag_graph",
            (
                *_PLAN_OPTIONS,
                Option(
                    "failure_policy",
                    "str",
                    "fail_fast",
                    "a failed subtask stops the run (fail_fast), or is recorded and its "
                    "dependants skipped (continue)",
                    choices=("fail_fast", "continue"),
                ),
                Option(
                    "plan_attempts",
                    "int",
                    3,
                    "planner calls to get a plan without unknown dependencies or cycles",
                    minimum=1,
                ),
            ),
        ),
        GraphEntry(
            "map-reduce",
            "one mapper per item (lines, JSON array or document chunks), then reduce in levels",
            "plait.graphs.map_reduce:create_map_reduce_graph",
            (
                Option(
                    "mode",
                    "str",
                    "auto",
                    "how --input becomes items: auto (a JSON array, else lines), lines, json, "
                    "or document (chunks)",
                    choices=("auto", "lines", "json", "document"),
                ),
                Option("chunk_size", "int", 4000, "most characters in a document chunk", minimum=1),
                Option(
                    "reduce_chars",
                    "int",
                    12000,
                    "most characters of outputs per reducer call; more are reduced in levels",
                    minimum=1,
                ),
            ),
            reads_input=True,
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
    unknown = sorted(set(roles) - known) if known is not None else []
    if unknown:
        raise ModelSpecError(
            f"graph {name!r} has no role {unknown[0]!r} for --model-for; "
            f"its roles with these options: {', '.join(sorted(known))}"
        )
