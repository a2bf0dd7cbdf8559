"""Blackboard: knowledge sources read and write named entries on a shared board, round by round.

Each source declares the entries it needs and the one entry it writes. A round is: the controller
picks the eligible sources, they contribute in parallel (each is sent only the entries it needs),
then their proposals are written to the board, conflicts resolved by ``conflict_policy``.

Eligibility, the rule that makes the loop progress and stop: a source is eligible when every
entry it needs is on the board and either the entry it writes is missing, or it has something
new to read, i.e. an entry it needs was written in or after the round the source last
contributed (never counts as round 0). A source that read the board as it was at the start of
round r therefore re-runs only if one of its needs changed in round r or later; when nothing
changes, nothing re-runs, and the board settles or stalls.

The loop stops when the goal entry is on the board, when no source is eligible (a stall,
reported with what each waiting source lacks), or after ``max_rounds``; ``stop_reason`` says
which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import Field, create_model
from typing_extensions import TypedDict

from plait.errors import GraphSetupError
from plait.graphs.checks import NODE_NAME, check_unique
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

PROMPTS = {
    "critic": "You are the critic. Name the risks, gaps and weak assumptions in what the board "
    "holds so far, most serious first.",
    "solver": "You are the solver. Using every board entry you are given, write the complete "
    "answer to the task.",
    "merger": "You are the merger. Several sources wrote the same board entry. Combine their "
    "values into one that keeps every correct point and drops repetition. Return only the value.",
    "controller": "You are the controller of a blackboard. Several sources wrote the same board "
    "entry; choose the one contribution the board should keep.",
}


@dataclass(frozen=True)
class KnowledgeSource:
    """An agent that writes one board entry from the entries it needs.

    Attributes:
        name: The source's name; also its role (prompt, model and usage line).
        needs: Entries that must be on the board before it can contribute; it is sent only these.
        writes: The entry it writes.
        instructions: Its system text (default: the role prompt for ``name``).
        priority: Wins conflicts on its entry under the ``priority`` policy (higher wins).

    """

    name: str
    needs: tuple[str, ...] = ()
    writes: str = ""
    instructions: str | None = None
    priority: int = 0


DEFAULT_SOURCES = (
    KnowledgeSource("researcher", (), "facts"),
    KnowledgeSource("analyst", ("facts",), "analysis"),
    KnowledgeSource("critic", ("facts",), "risks"),
    KnowledgeSource("solver", ("facts", "analysis", "risks"), "solution"),
)


class Entry(TypedDict):
    value: str
    author: str
    round: int


class Proposal(TypedDict):
    entry: str
    value: str
    round: int


class BlackboardState(CommonState, total=False):
    board: Annotated[dict[str, Entry], merge_by_key]
    proposals: Annotated[dict[str, Proposal], merge_by_key]  # latest per source
    round: int
    active: list[str]
    stop_reason: str


class SourceInput(TypedDict):
    """What ``Send`` carries to one source: the task, the round and only the entries it needs."""

    task: str
    source: str
    round: int
    entries: dict[str, str]


def eligible(
    sources: Sequence[KnowledgeSource], board: Mapping[str, Entry], last_round: Mapping[str, int]
) -> list[str]:
    """Return the sources allowed to contribute next (the rule is in the module docstring).

    Args:
        sources: All sources, in declaration order.
        board: The current board.
        last_round: The round each source last contributed in (absent: never).

    """
    chosen = []
    for source in sources:
        if not all(need in board for need in source.needs):
            continue
        since = last_round.get(source.name, 0)
        if source.writes not in board or any(board[n]["round"] >= since for n in source.needs):
            chosen.append(source.name)
    return chosen


@validated
def create_blackboard_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    sources: Annotated[
        Sequence[KnowledgeSource | Mapping[str, Any]],
        Field(
            description="JSON list of sources: name, needs, writes, optional instructions and "
            "priority"
        ),
    ] = DEFAULT_SOURCES,
    goal: Annotated[str, Field(description="the board entry that ends the run")] = "solution",
    max_rounds: Annotated[
        int, Field(ge=1, description="most rounds before stopping without the goal")
    ] = 5,
    conflict_policy: Annotated[
        Literal["priority", "merge", "escalate"],
        Field(
            description="two writes to one entry in a round: higher priority wins, a merger "
            "combines them, or the controller picks"
        ),
    ] = "priority",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[BlackboardState, PlaitContext]:
    """Knowledge sources write entries on a shared board, in parallel rounds, until the
    goal entry is there.

    Args:
        prompts: Role instructions to override, keyed by role (source names, merger,
            controller).

    Example:
        ``app = create_blackboard_graph(goal="solution", conflict_policy="merge").compile()``

    """
    chosen = _check(sources, goal, max_rounds, conflict_policy)
    by_name = {s.name: s for s in chosen}

    @node
    async def controller(state: BlackboardState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        board, done = state.get("board", {}), state.get("round", 0)
        ready = eligible(chosen, board, _last_rounds(state))
        if goal in board:
            reason = f"goal entry {goal!r} written in round {board[goal]['round']}"
        elif not ready:
            reason = (
                f"stalled after round {done}: no source is eligible and the goal entry "
                f"{goal!r} is missing; {_waiting(chosen, board)}"
            )
        elif done >= max_rounds:
            reason = f"max_rounds ({max_rounds}) reached without the goal entry {goal!r}"
        else:
            for name in ready:
                say(
                    "controller",
                    name,
                    "activate",
                    f"round {done + 1}",
                    correlation_id=by_name[name].writes,
                )
            return {"round": done + 1, "active": ready}
        return {"stop_reason": reason, "active": []}

    async def dispatch(state: BlackboardState) -> list[Send] | str:
        if state.get("stop_reason"):
            return "finish"
        board = state.get("board", {})
        return [
            Send(
                "source",
                SourceInput(
                    task=state["task"],
                    source=name,
                    round=state["round"],
                    entries={n: board[n]["value"] for n in by_name[name].needs},
                ),
            )
            for name in state["active"]
        ]

    @node
    async def source(payload: SourceInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        spec = by_name[payload["source"]]
        sections = {f"board_entry_{name}": value for name, value in payload["entries"].items()}
        wanted = f"Write the board entry {spec.writes!r}. Reply with its value only."
        reply = await ask(
            runtime,
            spec.name,
            spec.instructions or role_prompt(spec.name, prompts, PROMPTS),
            user_prompt(payload["task"], **sections, your_entry=wanted),
        )
        say(spec.name, "board", "write", reply.value, correlation_id=spec.writes)
        proposal = Proposal(entry=spec.writes, value=reply.value, round=payload["round"])
        return {"proposals": {spec.name: proposal}}

    @node
    async def resolve(state: BlackboardState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        now = state["round"]
        writes: dict[str, list[tuple[str, str]]] = {}
        for spec in chosen:  # declaration order, so priority ties are deterministic
            proposal = state.get("proposals", {}).get(spec.name)
            if proposal and proposal["round"] == now:
                writes.setdefault(proposal["entry"], []).append((spec.name, proposal["value"]))
        # The settlements run as tasks that share this node's ledger, so their calls are booked.
        settled = await asyncio.gather(
            *(
                _settle(
                    runtime, conflict_policy, prompts, state["task"], entry, candidates, by_name
                )
                for entry, candidates in writes.items()
            )
        )
        board = {}
        for entry, (author, value, note) in zip(writes, settled, strict=True):
            board[entry] = Entry(value=value, author=author, round=now)
            if note:  # said here, in entry order, not by the settlements running in parallel
                say(author, "board", "conflict", note, correlation_id=entry)
        return {"board": board}

    @node
    async def finish(state: BlackboardState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        board = state.get("board", {})
        listing = _render(board)
        if goal in board:
            result = f"{board[goal]['value']}\n\nFinal board:\n{listing}"
        else:
            result = f"No {goal!r} on the board: {state['stop_reason']}.\n\nFinal board:\n{listing}"
        say("controller", "user", "result", result)
        return {"result": result}

    builder = StateGraph(BlackboardState, context_schema=PlaitContext)
    builder.add_node("controller", controller)
    builder.add_node("source", source, input_schema=SourceInput)
    builder.add_node("resolve", resolve)
    builder.add_node("finish", finish)
    builder.add_edge(START, "controller")
    builder.add_conditional_edges("controller", dispatch, ["source", "finish"])
    builder.add_edge("source", "resolve")
    builder.add_edge("resolve", "controller")
    builder.add_edge("finish", END)
    return builder


ConflictPolicy = Literal["priority", "merge", "escalate"]


async def _settle(
    runtime: Runtime[PlaitContext],
    policy: ConflictPolicy,
    prompts: Mapping[str, str] | None,
    task: str,
    entry: str,
    candidates: list[tuple[str, str]],
    by_name: Mapping[str, KnowledgeSource],
) -> tuple[str, str, str]:
    """One entry's write for this round: ``(author, value, conflict note or "")``."""
    if len(candidates) == 1:
        author, value = candidates[0]
        return author, value, ""
    names = [name for name, _ in candidates]
    if policy == "priority":
        author, value = max(candidates, key=lambda c: by_name[c[0]].priority)  # first max wins
        return author, value, f"{', '.join(names)} wrote {entry!r}; {author} kept by priority"
    offers = "\n\n".join(f"[{name}]\n{value}" for name, value in candidates)
    if policy == "merge":
        reply = await ask(
            runtime,
            "merger",
            role_prompt("merger", prompts, PROMPTS),
            user_prompt(task, entry=entry, contributions=offers),
        )
        return "merger", reply.value, f"merged the writes of {', '.join(names)}"
    source_name: Any = Literal[tuple(names)]  # a Literal built at run time
    ruling = create_model(
        "Ruling",
        keep=(source_name, Field(description="the source whose value the board keeps")),
        reason=(str, Field(description="why, in one sentence")),
    )
    verdict = await ask_for(
        runtime,
        "controller",
        role_prompt("controller", prompts, PROMPTS),
        user_prompt(task, entry=entry, contributions=offers),
        ruling,
    )
    decision: Any = verdict.value  # a create_model class: mypy cannot see its fields
    kept: str = decision.keep
    value = dict(candidates)[kept]
    return (
        kept,
        value,
        f"{', '.join(names)} wrote {entry!r}; the controller kept {kept}: {decision.reason}",
    )


def _last_rounds(state: BlackboardState) -> dict[str, int]:
    # A source's latest proposal is kept whether or not it won, so a losing source does not
    # count as never having contributed (which would make it eligible forever).
    return {name: p["round"] for name, p in state.get("proposals", {}).items()}


def _waiting(sources: Sequence[KnowledgeSource], board: Mapping[str, Entry]) -> str:
    lacking = [
        f"{s.name} needs {', '.join(n for n in s.needs if n not in board)}"
        for s in sources
        if any(n not in board for n in s.needs)
    ]
    return "waiting: " + "; ".join(lacking) if lacking else "every source is up to date"


def _render(board: Mapping[str, Entry]) -> str:
    if not board:
        return "(empty)"
    return "\n".join(
        f"- {name} (by {e['author']}, round {e['round']}): {e['value']}"
        for name, e in board.items()
    )


def _check(
    sources: Iterable[KnowledgeSource | Mapping[str, Any]],
    goal: str,
    max_rounds: int,
    policy: ConflictPolicy,
) -> list[KnowledgeSource]:
    chosen = [_source(s) for s in sources]
    if not chosen:
        raise GraphSetupError("a blackboard needs at least one knowledge source")
    names = [s.name for s in chosen]
    for s in chosen:
        if not NODE_NAME.fullmatch(s.name):
            raise GraphSetupError(f"invalid source name {s.name!r}: use letters, digits, _ or -")
        if not s.writes:
            raise GraphSetupError(f"source {s.name!r} must name the entry it writes")
        if s.writes in s.needs:
            raise GraphSetupError(f"source {s.name!r} needs the entry it writes ({s.writes!r})")
    check_unique("source", names)
    written = sorted({s.writes for s in chosen})
    if goal not in written:
        raise GraphSetupError(
            f"no source writes the goal entry {goal!r}; written: {', '.join(written)}"
        )
    for s in chosen:
        if missing := [n for n in s.needs if n not in written]:
            raise GraphSetupError(
                f"source {s.name!r} needs {', '.join(map(repr, missing))}, which "
                f"no source writes; written: {', '.join(written)}"
            )
    return chosen


def _source(item: KnowledgeSource | Mapping[str, Any]) -> KnowledgeSource:
    try:
        source = item if isinstance(item, KnowledgeSource) else KnowledgeSource(**item)
    except TypeError as exc:
        raise GraphSetupError(
            f"a source must be an object with keys name, needs, writes, instructions, priority: "
            f"{exc}"
        ) from None
    # A dataclass does not check its fields' types and a source may come from JSON, so each
    # field is read as a plain object here.
    name: object = source.name
    writes: object = source.writes
    needs: object = source.needs
    priority: object = source.priority
    well_typed = (
        isinstance(name, str)
        and isinstance(writes, str)
        and not isinstance(needs, str)
        and all(isinstance(n, str) for n in source.needs)
        and isinstance(priority, int)
    )
    if not well_typed:
        raise GraphSetupError(
            f"source {source.name!r}: name and writes must be text, needs a list of entry names "
            "and priority an integer"
        )
    return KnowledgeSource(
        source.name, tuple(source.needs), source.writes, source.instructions, source.priority
    )
