"""Auction: announce the work, collect bids in parallel, award each lot, the winners execute it.

The work is the whole task, or (with ``decompose``) the subtasks a planner splits it into; each
is a lot. Every bidder is sent only the announcement of one lot and returns a ``Bid``. The lowest
cost per unit of capability among valid bids wins (``select_winner``, a pure function). A lot
with no valid bid goes to the ``fallback`` agent if one is configured, otherwise the result says
that nobody could take it. ``stop_reason`` records how the work was awarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from plait.errors import GraphSetupError
from plait.graphs.checks import check_subtask_range, check_unique
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.branch import unique_ids
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

DEFAULT_BIDDERS = ("researcher", "analyst", "writer")
WHOLE_TASK = "task"  # the lot id when the task is auctioned undivided

PROMPTS = {
    "planner": "You are the planner. Split the task into independent subtasks, each small enough "
    "for one agent. Do not assign them: each subtask will be put up for auction.",
}

BID_RULES = (
    "Bid for this work as your role. willing: whether you will take it on; capable: whether "
    "your role can do it well; capability_score: from 0 to 1, how well your role fits it; cost: "
    "the effort it would take you (lower is better); estimated_time: minutes it would take you. "
    "The bid with the lowest cost per unit of capability wins."
)


AWARD_NOTES = {
    "bid": "won the auction",
    "fallback": "no valid bid; the fallback takes it",
    "none": "no valid bid and no fallback",
}


class Bid(BaseModel):
    """One bidder's offer for one lot."""

    willing: bool = Field(description="true if you will take the work on")
    capable: bool = Field(description="true if your role can do the work well")
    capability_score: float = Field(ge=0, le=1, description="how well your role fits, 0 to 1")
    cost: float = Field(ge=0, description="the effort the work would take you; lower is better")
    estimated_time: float = Field(ge=0, description="minutes the work would take you")


class Lot(TypedDict):
    id: str
    description: str


class Award(TypedDict):
    agent: str  # who executes the lot; "" when nobody does
    how: str  # "bid", "fallback" or "none"


def merge_bids(
    left: Mapping[str, Mapping[str, Any]] | None, right: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Merge bids keyed by (lot, bidder), the right side winning.

    Bidders of one lot bid in parallel, so each lot's inner dict merges too; a bid made again
    on resume replaces the earlier one.
    """
    merged = {lot: dict(bids) for lot, bids in (left or {}).items()}
    for lot, bids in (right or {}).items():
        merged[lot] = {**merged.get(lot, {}), **bids}
    return merged


class AuctionState(CommonState, total=False):
    lots: list[Lot]
    bids: Annotated[dict[str, dict[str, dict[str, Any]]], merge_bids]  # lot id -> bidder -> Bid
    awards: dict[str, Award]
    outputs: Annotated[dict[str, str], merge_by_key]
    stop_reason: str


class BidInput(TypedDict):
    """What ``Send`` carries to one bidder: the announcement of one lot, nothing else."""

    task: str
    lot: Lot
    bidder: str
    divided: bool


class ExecuteInput(TypedDict):
    """What ``Send`` carries to one lot's executor."""

    task: str
    lot: Lot
    agent: str
    divided: bool


def _lot_id(payload: ExecuteInput) -> str:
    return payload["lot"]["id"]


def rejection(bid: Bid) -> str | None:
    """Say why a bid is invalid, or None when it may win."""
    if not bid.willing:
        return "unwilling"
    if not bid.capable:
        return "not capable"
    if bid.capability_score <= 0:
        return "capability_score 0"
    return None


def select_winner(bids: Mapping[str, Bid]) -> str | None:
    """Pick the winning bidder: lowest cost per unit of capability among valid bids.

    Ties go to the lower estimated_time, then to the bidder whose name sorts first, so the
    same bids always give the same winner.

    Args:
        bids: Each bidder's bid, keyed by bidder name.

    Returns:
        The winner's name, or None when no bid is valid.

    """
    valid = [
        (bid.cost / bid.capability_score, bid.estimated_time, name)
        for name, bid in bids.items()
        if rejection(bid) is None
    ]
    return min(valid)[2] if valid else None


@validated
def create_auction_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    bidders: Annotated[
        Sequence[str], Field(description="agents that bid for the work")
    ] = DEFAULT_BIDDERS,
    decompose: Annotated[
        bool, Field(description="split the task into subtasks and auction each")
    ] = False,
    min_subtasks: Annotated[int, Field(ge=1, description="fewest subtasks a split may have")] = 2,
    max_subtasks: Annotated[int, Field(ge=1, description="most subtasks a split may have")] = 5,
    fallback: Annotated[
        str, Field(description="agent that takes work nobody bid validly for (empty: none)")
    ] = "",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[AuctionState, PlaitContext]:
    """Bidders bid for the task (or each subtask); the lowest cost per capability wins and
    does it.

    Args:
        prompts: Role instructions to override, keyed by role (bidders, fallback, planner,
            synthesizer).

    Example:
        ``app = create_auction_graph(bidders=["coder", "writer"], fallback="generalist").compile()``

    """
    bidders = tuple(bidders)
    # isinstance is a guard only: @validated already refuses a bidder that is not text.
    if (
        not bidders
        or not all(isinstance(b, str) for b in bidders)
        or not all(b.strip() for b in bidders)
    ):
        raise GraphSetupError(f"an auction needs at least one named bidder, got {list(bidders)}")
    check_unique("bidder", bidders)
    check_subtask_range(min_subtasks, max_subtasks)
    # The planner only splits; roles are settled by bidding, so its plan has no role field.
    subtask = create_model(
        "Subtask",
        id=(str, Field(description="short unique id, e.g. s1")),
        description=(str, Field(description="what must be done and returned")),
    )
    plan = create_model(
        "Split",
        subtasks=(list[subtask], Field(min_length=min_subtasks, max_length=max_subtasks)),
    )

    @node
    async def announce(state: AuctionState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        if decompose:
            rules = f"Use between {min_subtasks} and {max_subtasks} subtasks."
            reply = await ask_for(
                runtime,
                "planner",
                role_prompt("planner", prompts, PROMPTS),
                user_prompt(state["task"], rules=rules),
                plan,
            )
            split: Any = reply.value  # a create_model class: mypy cannot see its fields
            lots = _unique_ids([s.model_dump() for s in split.subtasks])
        else:
            lots = [Lot(id=WHOLE_TASK, description=state["task"])]
        for lot in lots:
            say("auctioneer", "bidders", "announce", lot["description"], correlation_id=lot["id"])
        return {"lots": lots}

    async def call_for_bids(state: AuctionState) -> list[Send]:
        return [
            Send("bid", BidInput(task=state["task"], lot=lot, bidder=name, divided=decompose))
            for lot in state["lots"]
            for name in bidders
        ]

    @node
    async def bid(payload: BidInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        name, lot = payload["bidder"], payload["lot"]
        reply = await ask_for(
            runtime,
            name,
            role_prompt(name, prompts, PROMPTS),
            _work_prompt(payload, how_to_bid=BID_RULES),
            Bid,
        )
        offer = reply.value
        say(name, "auctioneer", "bid", offer.model_dump_json(), correlation_id=lot["id"])
        return {"bids": {lot["id"]: {name: offer.model_dump()}}}

    @node
    async def award(state: AuctionState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        awards = {}
        for lot in state["lots"]:
            offers = {name: Bid(**b) for name, b in state["bids"].get(lot["id"], {}).items()}
            winner = select_winner(offers)
            how = "bid" if winner else "fallback" if fallback else "none"
            awards[lot["id"]] = Award(agent=winner or fallback, how=how)
            say(
                "auctioneer",
                winner or fallback or "user",
                "award",
                AWARD_NOTES[how],
                correlation_id=lot["id"],
            )
        return {"awards": awards}

    async def assign(state: AuctionState) -> list[Send] | str:
        sends = [
            Send(
                "execute",
                ExecuteInput(
                    task=state["task"],
                    lot=lot,
                    divided=decompose,
                    agent=state["awards"][lot["id"]]["agent"],
                ),
            )
            for lot in state["lots"]
            if state["awards"][lot["id"]]["agent"]
        ]
        return sends or "finish"

    # No on_error: a failed lot stops the run; resume re-runs the lots not done.
    @node(branch=_lot_id)
    async def execute(payload: ExecuteInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        name, lot = payload["agent"], payload["lot"]
        reply = await ask(runtime, name, role_prompt(name, prompts, PROMPTS), _work_prompt(payload))
        say(name, "auctioneer", "result", reply.value, correlation_id=lot["id"])
        return {"outputs": {lot["id"]: reply.value}}

    @node
    async def finish(state: AuctionState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        lots, awards, outputs = state["lots"], state["awards"], state.get("outputs", {})
        untaken = [lot for lot in lots if awards[lot["id"]]["how"] == "none"]
        reason = _stop_reason(lots, awards, state["bids"])
        if len(untaken) == len(lots):
            result = "Nobody could take the work.\n" + "\n".join(
                f"- {lot['description']}: {_rejections(state['bids'].get(lot['id'], {}))}"
                for lot in lots
            )
            return {"result": result, "stop_reason": reason}
        if not decompose:
            return {"result": outputs[WHOLE_TASK], "stop_reason": reason}
        results = "\n\n".join(
            f"[{lot['id']} · {awards[lot['id']]['agent'] or 'nobody'}] {lot['description']}\n"
            + outputs.get(lot["id"], "NOT DONE: no agent could take it")
            for lot in lots
        )
        reply = await ask(
            runtime,
            "synthesizer",
            role_prompt("synthesizer", prompts, PROMPTS),
            user_prompt(state["task"], subtask_results=results),
        )
        say("synthesizer", "user", "result", reply.value)
        return {"result": reply.value, "stop_reason": reason}

    builder = StateGraph(AuctionState, context_schema=PlaitContext)
    builder.add_node("announce", announce)
    builder.add_node("bid", bid, input_schema=BidInput)
    builder.add_node("award", award)
    builder.add_node("execute", execute, input_schema=ExecuteInput)
    builder.add_node("finish", finish)
    builder.add_edge(START, "announce")
    builder.add_conditional_edges("announce", call_for_bids, ["bid"])
    builder.add_edge("bid", "award")
    builder.add_conditional_edges("award", assign, ["execute", "finish"])
    builder.add_edge("execute", "finish")
    builder.add_edge("finish", END)
    return builder


def _work_prompt(payload: BidInput | ExecuteInput, **sections: str) -> str:
    # An undivided lot is the task itself; a subtask is shown with the task it is part of.
    if payload["divided"]:
        return user_prompt(payload["task"], your_subtask=payload["lot"]["description"], **sections)
    return user_prompt(payload["task"], **sections)


def _rejections(bids: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{name} {rejection(Bid(**b))}" for name, b in sorted(bids.items()))


def _stop_reason(lots: list[Lot], awards: Mapping[str, Award], bids: Mapping[str, Any]) -> str:
    parts = []
    for lot in lots:
        award = awards[lot["id"]]
        if award["how"] == "bid":
            offer = Bid(**bids[lot["id"]][award["agent"]])
            parts.append(
                f"{lot['id']}: won by {award['agent']} (cost per capability "
                f"{offer.cost / offer.capability_score:.3g})"
            )
        elif award["how"] == "fallback":
            parts.append(f"{lot['id']}: no valid bid, given to the fallback {award['agent']}")
        else:
            parts.append(f"{lot['id']}: no valid bid and no fallback configured")
    return "; ".join(parts)


def _unique_ids(subtasks: list[dict[str, str]]) -> list[Lot]:
    # Bids and outputs are keyed by lot id, so two subtasks sharing one would overwrite each
    # other; WHOLE_TASK is reserved too.
    ids = unique_ids((sub["id"] for sub in subtasks), taken=[WHOLE_TASK])
    return [
        Lot(id=lot_id, description=sub["description"])
        for lot_id, sub in zip(ids, subtasks, strict=True)
    ]
