"""Debate: debaters argue distinct positions in parallel, rebut each other, a judge decides.

Round 1 is the opening: every debater argues its position at once (``Send``). Each further
round is a rebuttal in which a debater sees its own last argument and the others' latest ones,
never the whole history. The state keeps each debater's latest argument only, keyed by
debater, so a debater that re-runs on resume replaces its argument. The judge reads each
debater's latest argument and returns a structured ``Decision``; a debater that failed is named
to the judge as missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from plait.errors import GraphSetupError, PlaitError
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.kit import node, say
from plait.nodes.prompts import member_prompt, role_prompt
from plait.state.common import CommonState, merge_by_key

DEFAULT_POSITIONS = (
    "for: make the strongest case for the most promising answer",
    "against: make the strongest case against that answer and for its main alternative",
    "pragmatist: argue for what works in practice, weighing cost, risk and effort",
    "skeptic: challenge the assumptions the other answers rely on",
    "contrarian: argue for an answer the others are likely to overlook",
)

PROMPTS = {
    "debater": "You are the {role}. You take part in a debate and argue the position you are "
    "given, with concrete reasons and evidence. In a rebuttal, answer the strongest points of "
    "the other debaters and sharpen your own case. Be concise.",
    "judge": "You are the judge. Weigh the debaters' arguments on their merits, not on how "
    "many argue a side, and decide the task. If a debater is missing, say so and judge on what "
    "you have.",
}


class Decision(BaseModel):
    """The judge's ruling."""

    decision: str = Field(description="the answer to the task, in a sentence or two")
    rationale: str = Field(description="why, weighing the debaters' arguments")
    confidence: float = Field(ge=0, le=1, description="how sure the judge is, from 0 to 1")


class Argument(TypedDict):
    debater: str
    position: str
    round: int
    text: str


class DebateState(CommonState, total=False):
    # Each debater's latest argument, keyed by debater: all that rebuttals and the judge read.
    # Every checkpoint stores the whole state, so keeping every round here would grow each
    # checkpoint by a round's arguments a round (storage quadratic in rounds); an earlier
    # round's argument is still stored once, as its debater's write in that round.
    arguments: Annotated[dict[str, Argument], merge_by_key]
    round: int  # rounds completed
    decision: dict[str, Any]
    stop_reason: str


class DebaterInput(TypedDict):
    """What ``Send`` carries to one debater: its own input, not the state.

    In a rebuttal that is its own last argument and the others' latest ones.
    """

    task: str
    debater: str
    position: str
    round: int
    own: str
    others: dict[str, Argument]


@validated
def create_debate_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    debaters: Annotated[
        int | None,
        Field(
            ge=2,
            description="number of debaters (default 3, or one per position when positions "
            "are given)",
        ),
    ] = None,
    rounds: Annotated[
        int,
        Field(
            ge=1,
            description="rounds in all: 1 is opening arguments only, each extra one a rebuttal",
        ),
    ] = 1,
    positions: Annotated[
        Sequence[str],
        Field(description="the stance each debater argues (default: built-in distinct stances)"),
    ] = (),
    on_branch_error: Annotated[
        Literal["fail", "continue"],
        Field(
            description="a failed debater is named to the judge as missing (continue) or stops "
            "the run (fail)"
        ),
    ] = "continue",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[DebateState, PlaitContext]:
    """Debaters argue distinct positions in parallel, rebut each other, and a judge
    decides.

    Debaters are the roles ``debater_1`` .. ``debater_N`` (so each can have its own model);
    the judge is ``judge``.

    Args:
        prompts: Role instructions to override, keyed by role (``debater`` for all debaters,
            ``debater_2`` for one, ``judge``).

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_debate_graph(positions=["monolith", "microservices"], rounds=2).compile()``

    """
    stances = _stances(debaters, positions)
    texts = {**PROMPTS, **(prompts or {})}
    names = list(stances)

    async def opening(state: DebateState) -> list[Send]:
        return [
            Send(
                "debater",
                DebaterInput(
                    task=state["task"], debater=name, position=stance, round=1, own="", others={}
                ),
            )
            for name, stance in stances.items()
        ]

    @node
    async def debater(payload: DebaterInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        name, number = payload["debater"], payload["round"]
        key = f"r{number}/{name}"
        sections = {"your_position": payload["position"]}
        if number == 1:
            sections["your_turn"] = "Opening argument."
        else:
            sections["your_turn"] = f"Rebuttal, round {number} of {rounds}."
            sections["your_previous_argument"] = payload["own"]
            sections["other_debaters_latest_arguments"] = _render(payload["others"].values())
        try:
            reply = await ask(
                runtime,
                name,
                member_prompt(name, "debater", texts),
                user_prompt(payload["task"], **sections),
            )
        except PlaitError as exc:
            if on_branch_error == "fail":
                raise
            say(name, "judge", "failure", str(exc), correlation_id=key)
            return {"errors": {key: str(exc)}}
        argument = Argument(
            debater=name, position=payload["position"], round=number, text=reply.value
        )
        say(name, "debaters", "argument", reply.value, correlation_id=key)
        return {"arguments": {name: argument}}

    async def close_round(state: DebateState) -> dict[str, Any]:
        done = state.get("round", 0) + 1
        standing = _arguments_of_round(state, done, names)
        if not standing:
            reason = f"every debater failed in round {done}"
        elif done >= rounds:
            reason = f"all {rounds} round(s) held"
        elif len(standing) < 2:
            reason = f"only {standing[0]['debater']} was left after round {done}; no one to rebut"
        else:
            return {"round": done}
        return {"round": done, "stop_reason": reason}

    async def next_step(state: DebateState) -> list[Send] | Literal["judge"]:
        if state.get("stop_reason"):
            return "judge"
        done = state["round"]
        standing = {a["debater"]: a for a in _arguments_of_round(state, done, names)}
        return [
            Send(
                "debater",
                DebaterInput(
                    task=state["task"],
                    debater=name,
                    position=arg["position"],
                    round=done + 1,
                    own=arg["text"],
                    others={k: v for k, v in standing.items() if k != name},
                ),
            )
            for name, arg in standing.items()
        ]

    @node
    async def judge(state: DebateState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        latest = _latest_arguments(state, names)
        missing = _missing(state, stances, latest)
        if not latest:
            return {"result": "No decision: every debater failed.\n" + missing}
        sections = {"arguments": _render(latest)}
        if missing:
            sections["missing"] = missing
        reply = await ask_for(
            runtime,
            "judge",
            role_prompt("judge", texts),
            user_prompt(state["task"], **sections),
            Decision,
        )
        ruling = reply.value
        result = (
            f"{ruling.decision}\n\nRationale: {ruling.rationale}\n"
            f"Confidence: {ruling.confidence:.2f}"
        )
        if missing:
            result += f"\n\nMissing from the debate:\n{missing}"
        say("judge", "user", "decision", ruling.decision)
        return {"decision": ruling.model_dump(), "result": result}

    builder = StateGraph(DebateState, context_schema=PlaitContext)
    builder.add_node("debater", debater, input_schema=DebaterInput)
    builder.add_node("close_round", close_round)
    builder.add_node("judge", judge)
    builder.add_conditional_edges(START, opening, ["debater"])
    builder.add_edge("debater", "close_round")
    builder.add_conditional_edges("close_round", next_step, ["debater", "judge"])
    builder.add_edge("judge", END)
    return builder


def _stances(debaters: int | None, positions: Sequence[str]) -> dict[str, str]:
    """Debater role -> the position it argues."""
    chosen = [p.strip() for p in positions]
    if positions:
        if not all(chosen):
            raise GraphSetupError("positions must not be empty strings")
        if len({p.casefold() for p in chosen}) != len(chosen):
            raise GraphSetupError(f"positions must be distinct, got {chosen}")
        if debaters is not None and debaters != len(chosen):
            raise GraphSetupError(
                f"debaters={debaters} but {len(chosen)} positions were given; give one position "
                "per debater, or leave debaters unset"
            )
    count = len(chosen) if chosen else (3 if debaters is None else debaters)
    if count < 2:
        raise GraphSetupError(f"a debate needs at least 2 debaters, got {count}")
    chosen = chosen or [
        DEFAULT_POSITIONS[i]
        if i < len(DEFAULT_POSITIONS)
        else f"independent view {i + 1}: argue the answer you find best, unlike the others'"
        for i in range(count)
    ]
    return {f"debater_{i}": stance for i, stance in enumerate(chosen, 1)}


def _arguments_of_round(state: DebateState, number: int, names: list[str]) -> list[Argument]:
    # A debater that failed this round still holds an earlier round's argument: not standing.
    return [a for a in _latest_arguments(state, names) if a["round"] == number]


def _latest_arguments(state: DebateState, names: list[str]) -> list[Argument]:
    # By round, not by key: a thread begun before arguments were keyed by debater holds them
    # under "r<round>/<debater>", and resuming it must still find each debater's latest.
    latest: dict[str, Argument] = {}
    for arg in state.get("arguments", {}).values():
        if arg["debater"] not in latest or arg["round"] > latest[arg["debater"]]["round"]:
            latest[arg["debater"]] = arg
    return [latest[name] for name in names if name in latest]


def _missing(state: DebateState, stances: dict[str, str], latest: list[Argument]) -> str:
    """One line per debater failure: who, their position, the round and the error."""
    errors, last_round = state.get("errors", {}), {a["debater"]: a["round"] for a in latest}
    lines = []
    for number in range(1, state.get("round", 0) + 1):
        for name, stance in stances.items():
            if (error := errors.get(f"r{number}/{name}")) is not None:
                kept = (
                    f"its last argument is from round {last_round[name]}"
                    if name in last_round
                    else "it made no argument"
                )
                lines.append(f"- {name} ({stance}) failed in round {number}; {kept}: {error}")
    return "\n".join(lines)


def _render(arguments: Iterable[Argument]) -> str:
    return "\n\n".join(
        f"[{a['debater']} · position: {a['position']} · round {a['round']}]\n{a['text']}"
        for a in arguments
    )
