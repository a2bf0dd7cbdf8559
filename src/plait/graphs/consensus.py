"""Consensus: voters vote in parallel, the votes are tallied, and re-voted until they agree.

Each voter returns a structured ``Vote``. The tally (``tally``, a pure function) decides by
majority with a quorum or by confidence weight with a threshold; a tie is never a consensus.
Without consensus, up to ``rounds`` re-votes follow, in which each voter sees only the last
round's tally and reasons. Votes merge by round and voter, so a re-run replaces a vote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from plait.errors import GraphSetupError
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask_for, user_prompt
from plait.nodes.kit import node, say
from plait.state.common import CommonState, merge_by_key

PROMPTS = {
    "voter": "You are the voter. Decide the question in the task for yourself. Give your "
    "position as a short label of a few words, one that a voter who agrees would write the same "
    "way; how confident you are, from 0 to 1; and a one- or two-sentence rationale. In a "
    "re-vote, weigh the other voters' reasons and change your position only if they persuade "
    "you; if you agree with a position already named, use its exact label.",
}


class Vote(BaseModel):
    """One voter's ballot."""

    model_config = ConfigDict(str_strip_whitespace=True)

    position: str = Field(min_length=1, description="the option voted for, as a short label")
    confidence: float = Field(ge=0, le=1, description="how sure the voter is, from 0 to 1")
    rationale: str = Field(description="why, in one or two sentences")


class VoteRecord(TypedDict):
    voter: str
    round: int
    position: str
    confidence: float
    rationale: str


class Tally(TypedDict):
    """The count of one round of votes and whether it is a consensus.

    ``counts`` and ``weights`` are keyed by position, as first written; positions that differ
    only in case or spacing count as one. ``leader`` is the position with the most support
    (None on a tie or with no votes); ``confidence`` is its share of the votes cast (majority)
    or of the total confidence (weighted).
    """

    method: str
    votes: int
    counts: dict[str, int]
    weights: dict[str, float]
    leader: str | None
    confidence: float
    consensus: bool
    reason: str


class ConsensusState(CommonState, total=False):
    votes: Annotated[dict[str, VoteRecord], merge_by_key]  # keyed "r<round>/<voter>"
    round: int  # rounds completed
    tally: Tally
    consensus: bool
    stop_reason: str


class VoterInput(TypedDict):
    """What ``Send`` carries to one voter: the task and, in a re-vote, the last round only."""

    task: str
    voter: str
    round: int
    previous_round: str
    own_vote: str


def normalise(position: str) -> str:
    """The form positions are counted in: spacing collapsed, case folded."""
    return " ".join(position.split()).casefold()


def tally(
    votes: Iterable[Mapping[str, Any]], *, method: str, quorum: int, threshold: float
) -> Tally:
    """Count votes (mappings with ``position`` and ``confidence``) and decide on consensus.

    Args:
        votes: The round's votes, in a stable order (the first spelling of a position names it).
        method: ``majority``: the leading position needs at least ``quorum`` votes.
            ``weighted``: its summed confidence must be at least ``threshold`` of the total.
        quorum: Votes needed under ``majority``.
        threshold: Share of the total confidence needed under ``weighted``, in (0, 1].

    Returns:
        The tally; a tie for the lead, no votes, or no confidence at all is no consensus.
    """
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    weights: dict[str, float] = {}
    for vote in votes:
        key = normalise(vote["position"])
        labels.setdefault(key, " ".join(vote["position"].split()))
        counts[key] = counts.get(key, 0) + 1
        weights[key] = weights.get(key, 0.0) + vote["confidence"]
    score: Mapping[str, float] = counts if method == "majority" else weights
    ranked = sorted(score, key=lambda key: -score[key])  # stable: ties keep first-seen order
    cast, total = sum(counts.values()), sum(score.values())
    summary = Tally(
        method=method,
        votes=cast,
        counts={labels[k]: counts[k] for k in ranked},
        weights={labels[k]: round(weights[k], 4) for k in ranked},
        leader=None,
        confidence=0.0,
        consensus=False,
        reason="",
    )
    if not ranked:
        return {**summary, "reason": "no votes were cast"}
    if total <= 0:
        return {**summary, "reason": "the votes carry no confidence to weigh"}
    top = score[ranked[0]]
    tied = [labels[k] for k in ranked if math.isclose(score[k], top)]
    if len(tied) > 1:
        amount = f"{top:g} vote(s)" if method == "majority" else f"{top:.2f} confidence"
        return {**summary, "reason": f"tie between {', '.join(map(repr, tied))} at {amount} each"}
    leader, share = labels[ranked[0]], top / total
    if method == "majority":
        reached = counts[ranked[0]] >= quorum
        reason = (
            f"{counts[ranked[0]]} of {cast} votes for {leader!r}, "
            f"{'meeting' if reached else 'short of'} the quorum of {quorum}"
        )
    else:
        # A share computed from floats can land a hair under an exact threshold (0.6).
        reached = share >= threshold - 1e-9
        reason = (
            f"{leader!r} holds {share:.0%} of the total confidence, "
            f"{'meeting' if reached else 'short of'} the threshold of {threshold:.0%}"
        )
    return {
        **summary,
        "leader": leader,
        "confidence": round(share, 4),
        "consensus": reached,
        "reason": reason,
    }


@validated
def create_consensus_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    voters: Annotated[int, Field(ge=2, description="number of voters")] = 3,
    method: Annotated[
        Literal["majority", "weighted"],
        Field(
            description="count votes against the quorum (majority) or weigh them by confidence "
            "against the threshold (weighted)"
        ),
    ] = "majority",
    quorum: Annotated[
        int,
        Field(
            ge=0,
            description="votes the leader needs under majority (0: more than half the voters)",
        ),
    ] = 0,
    threshold: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            description="share of the total confidence the leader needs under weighted (0 to 1)",
        ),
    ] = 0.6,
    rounds: Annotated[
        int,
        Field(ge=0, description="re-vote rounds after the first vote while there is no consensus"),
    ] = 2,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[ConsensusState, PlaitContext]:
    """Voters vote in parallel; the tally is re-voted until consensus or the last round.

    Every voter is the role ``voter`` (one model serves them all; usage is recorded per voter
    as ``voter_1`` .. ``voter_K``). A voter that fails stops the run; resume re-asks only it.

    Args:
        prompts: Role instructions to override (``voter``).

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_consensus_graph(voters=5, method="weighted", threshold=0.7).compile()``

    """
    quorum = quorum or voters // 2 + 1
    if not 1 <= quorum <= voters:
        raise GraphSetupError(
            f"quorum must be between 1 and the number of voters ({voters}), got {quorum}"
        )
    instructions = (prompts or {}).get("voter", PROMPTS["voter"])
    names = [f"voter_{i}" for i in range(1, voters + 1)]

    async def first_vote(state: ConsensusState) -> list[Send]:
        return [
            Send(
                "voter",
                VoterInput(task=state["task"], voter=name, round=1, previous_round="", own_vote=""),
            )
            for name in names
        ]

    @node
    async def voter(payload: VoterInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        name, number = payload["voter"], payload["round"]
        sections = {}
        if number > 1:
            sections = {
                "previous_round": payload["previous_round"],
                "your_previous_vote": payload["own_vote"],
            }
        reply = await ask_for(
            runtime,
            "voter",
            instructions,
            user_prompt(payload["task"], **sections),
            Vote,
            agent=name,
        )
        vote = reply.value
        key = f"r{number}/{name}"
        record = VoteRecord(
            voter=name,
            round=number,
            position=vote.position,
            confidence=vote.confidence,
            rationale=vote.rationale,
        )
        say(name, "tally", "vote", _vote_line(record), correlation_id=key)
        return {"votes": {key: record}}

    async def count(state: ConsensusState) -> dict[str, Any]:
        done = state.get("round", 0) + 1
        ballots = _round_votes(state.get("votes", {}), done, names)
        counted = tally(ballots, method=method, quorum=quorum, threshold=threshold)
        update = {"round": done, "tally": counted, "consensus": counted["consensus"]}
        if counted["consensus"]:
            reason = f"consensus in round {done}: {counted['reason']}"
        elif done > rounds:
            reason = f"no consensus after {done} round(s): {counted['reason']}"
        else:
            return update
        return {
            **update,
            "stop_reason": reason,
            "result": _summary(counted, done, state["votes"], names),
        }

    async def next_step(state: ConsensusState) -> list[Send] | str:
        if state.get("stop_reason"):
            return END
        done = state["round"]
        ballots = {v["voter"]: v for v in _round_votes(state.get("votes", {}), done, names)}
        counted = state["tally"]
        previous = (
            f"Tally: {_tally_line(counted)}\nNo consensus yet: {counted['reason']}.\nReasons:\n"
        ) + "\n".join(f"- {_vote_line(v)}" for v in ballots.values())
        return [
            Send(
                "voter",
                VoterInput(
                    task=state["task"],
                    voter=name,
                    round=done + 1,
                    previous_round=previous,
                    own_vote=_vote_line(ballots[name]),
                ),
            )
            for name in names
        ]

    builder = StateGraph(ConsensusState, context_schema=PlaitContext)
    builder.add_node("voter", voter, input_schema=VoterInput)
    builder.add_node("tally", count)
    builder.add_conditional_edges(START, first_vote, ["voter"])
    builder.add_edge("voter", "tally")
    builder.add_conditional_edges("tally", next_step, ["voter", END])
    return builder


def _round_votes(
    votes: Mapping[str, VoteRecord], number: int, names: list[str]
) -> list[VoteRecord]:
    found = {v["voter"]: v for v in votes.values() if v["round"] == number}
    return [found[name] for name in names if name in found]


def _vote_line(vote: VoteRecord) -> str:
    rationale = " ".join(vote["rationale"].split())
    return f"{vote['voter']}: {vote['position']} (confidence {vote['confidence']:.2f}): {rationale}"


def _tally_line(counted: Tally) -> str:
    return (
        "; ".join(
            f"{label}: {counted['counts'][label]} vote(s), total confidence {weight:.2f}"
            for label, weight in counted["weights"].items()
        )
        or "no votes"
    )


def _summary(counted: Tally, done: int, votes: dict[str, VoteRecord], names: list[str]) -> str:
    if counted["consensus"]:
        head = (
            f"{counted['leader']}\n\nConsensus reached in round {done} by {counted['method']} "
            f"vote: {counted['reason']}; confidence {counted['confidence']:.2f}."
        )
    else:
        head = f"No consensus after {done} round(s) ({counted['method']}): {counted['reason']}."
    lines = [head, "", f"Tally: {_tally_line(counted)}"]
    for number in range(1, done + 1):
        lines.append(f"Round {number} votes:")
        lines += [f"- {_vote_line(v)}" for v in _round_votes(votes, number, names)]
    return "\n".join(lines)
