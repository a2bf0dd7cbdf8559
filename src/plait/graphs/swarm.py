"""Swarm: peers hand the task to each other with no central control.

The active agent returns a ``Move``: ``answer`` (its answer is the result), ``handoff`` to a
peer with a context summary (``Command(goto=peer)``), or ``ask_help``: parts of the work sent
to peers in parallel (``Send``), after which it must answer or hand off. Every agent serves at
most ``capacity`` help requests at once; requests beyond that are declined, in the order they
were asked, without calling the peer. An agent is sent only the task, the summary it was
handed and the help replies it received, never the transcript.

Handoffs stop after ``max_handoffs``, or as soon as two agents start bouncing the task
(A -> B -> A -> B): the agent that tried to complete the bounce is asked again and must answer
or ask for help. ``stop_reason`` says who answered and why.

With the demo model the first agent answers at once (``answer`` is the first action), so the
demo run is one call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Self

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send
from pydantic import BaseModel, Field, create_model, model_validator
from typing_extensions import TypedDict

from plait.errors import GraphSetupError
from plait.graphs.checks import check_node_names
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.kit import Node, node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

DEFAULT_AGENTS = ("triage", "researcher", "writer")
ACTIONS = ("answer", "handoff", "ask_help")  # answer first: the demo model picks the first
RULES = {
    "answer": "answer: give the final answer to the task yourself.",
    "handoff": "handoff: pass the task to a peer, with a summary of what they need to know.",
    "ask_help": "ask_help: ask peers for parts of the work; then you answer or hand off.",
}

PROMPTS = {
    "triage": "You are the triage agent. Work out what the request needs; answer it yourself "
    "when it is simple, otherwise hand it to the peer best placed to finish it.",
    "researcher": "You are the researcher. Find the facts the request needs and answer, or hand "
    "off with a summary of what you found when writing it up is the remaining work.",
    "writer": "You are the writer. Turn what you were handed into a clear, complete answer.",
}


class Handoff(TypedDict):
    sender: str
    receiver: str
    summary: str


class HelpReply(TypedDict):
    requester: str
    peer: str
    part: str
    reply: str  # empty when declined
    declined: str  # why the peer declined; empty when it helped


class SwarmState(CommonState, total=False):
    summary: str  # the context summary the active agent was handed
    handoffs: list[Handoff]
    help: Annotated[dict[str, HelpReply], merge_by_key]  # keyed by request id
    asked: list[str]  # ids of the active agent's help requests; empty when it has none
    closed: str  # why handoffs are closed, empty while they are open
    turn: int
    answered_by: str
    stop_reason: str


class HelpInput(TypedDict):
    """What ``Send`` carries to a helping peer: the task and its part, nothing else."""

    id: str
    task: str
    requester: str
    peer: str
    part: str


class _MoveRules(BaseModel):
    """Each action needs its own fields; a move that lacks them is re-asked."""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        move: Any = self  # its fields are added by the subclass move_schema builds
        action = move.action
        if action == "answer" and not move.answer.strip():
            raise ValueError("action answer needs a non-empty answer")
        if action == "handoff" and (move.to is None or not move.summary.strip()):
            raise ValueError("action handoff needs to (a peer) and a non-empty summary")
        if action == "ask_help" and not move.help:
            raise ValueError("action ask_help needs at least one help request")
        return self


@functools.cache
def move_schema(peers: tuple[str, ...], actions: tuple[str, ...]) -> type[BaseModel]:
    """The active agent's ``Move``, offering only ``actions``; an unknown peer is re-asked.

    Cached: one schema class per peer set and action set, however many turns ask for it.
    """
    fields: dict[str, Any] = {
        "action": (Literal[tuple(actions)], Field(description="what you do now")),
        "answer": (str, Field("", description="for answer: the final answer to the task")),
    }
    if peers:
        peer: Any = Literal[tuple(peers)]  # a Literal built at run time
        request = create_model(
            "HelpRequest",
            peer=(peer, Field(description="the peer to ask")),
            part=(str, Field(description="the part of the work you need done")),
        )
        fields["to"] = (peer | None, Field(None, description="for handoff: the peer to hand to"))
        summary = "for handoff: progress so far and what is left, for the peer"
        fields["summary"] = (str, Field("", description=summary))
        parts = "for ask_help: the parts of the work to ask peers for"
        fields["help"] = (list[request], Field([], description=parts))
    return create_model("Move", __base__=_MoveRules, **fields)


@validated
def create_swarm_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    agents: Annotated[Sequence[str], Field(description="the peer agents")] = DEFAULT_AGENTS,
    start: Annotated[
        str, Field(description="the agent that gets the task first (empty: the first agent)")
    ] = "",
    max_handoffs: Annotated[
        int, Field(ge=0, description="most handoffs before the active agent must answer")
    ] = 6,
    capacity: Annotated[
        int, Field(ge=1, description="help requests each agent serves at once; more are declined")
    ] = 1,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[SwarmState, PlaitContext]:
    """Peer agents answer, hand the task off with a summary, or ask each other for help.

    Args:
        prompts: Role instructions to override, keyed by agent.

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_swarm_graph(agents=["triage", "coder"], max_handoffs=3).compile()``
    """
    agents = check_node_names("agent", agents, {"help", *SwarmState.__annotations__})
    start = start or agents[0]
    if start not in agents:
        raise GraphSetupError(f"start {start!r} is not an agent; choose one of {', '.join(agents)}")

    def agent(name: str) -> Node[SwarmState]:
        peers = tuple(a for a in agents if a != name)

        @node
        async def act(state: SwarmState, runtime: Runtime[PlaitContext]) -> Command[str]:
            handoffs, asked = state.get("handoffs", []), state.get("asked", [])
            closed = state.get("closed", "")
            if not closed and len(handoffs) >= max_handoffs:
                closed = f"max_handoffs ({max_handoffs}) reached"
            actions = _allowed(bool(peers), closed, asked)
            sections = {
                "peers": ", ".join(peers) or "(none)",
                "your_options": _rules(actions, closed, asked),
            }
            if state.get("summary"):
                sections["handed_over"] = f"from {handoffs[-1]['sender']}: {state['summary']}"
            if asked:
                sections["help_replies"] = _help_text(state["help"], asked)
            reply = await ask_for(
                runtime,
                name,
                role_prompt(name, prompts, PROMPTS),
                user_prompt(state["task"], **sections),
                move_schema(peers, actions),
            )
            move: Any = reply.value  # a create_model class: mypy cannot see its fields
            turn = state.get("turn", 0) + 1
            base = {"turn": turn, "closed": closed, "asked": []}
            if move.action == "answer":
                reason = f"{name} answered after {len(handoffs)} handoff(s)"
                if closed:
                    reason = f"{closed}; {name} answered"
                say(name, "user", "result", move.answer)
                return Command(
                    goto=END,
                    update={
                        **base,
                        "result": move.answer,
                        "answered_by": name,
                        "stop_reason": reason,
                    },
                )
            if move.action == "handoff":
                path = [start, *(h["receiver"] for h in handoffs), move.to]
                if _bounces(path):
                    # Refuse the handoff and ask the same agent again, with handoffs closed.
                    why = f"ping-pong between {move.to} and {name} cut off"
                    say(name, move.to, "handoff_refused", why)
                    return Command(goto=name, update={**base, "asked": asked, "closed": why})
                say(name, move.to, "handoff", move.summary)
                return Command(
                    goto=move.to,
                    update={
                        **base,
                        "summary": move.summary,
                        "handoffs": [
                            *handoffs,
                            Handoff(sender=name, receiver=move.to, summary=move.summary),
                        ],
                    },
                )
            return ask_peers(name, turn, move.help, state["task"], base)

        return act

    def ask_peers(
        name: str, turn: int, requests: list[Any], task: str, base: dict[str, Any]
    ) -> Command[str]:
        # Runs inside the asking agent's node, so its envelopes are filed in that node's update.
        sends: list[Send] = []
        declined: dict[str, HelpReply] = {}
        load = dict.fromkeys(agents, 0)
        for index, req in enumerate(requests, 1):
            rid = f"t{turn}-{index}"
            say(name, req.peer, "help_request", req.part, correlation_id=rid)
            if load[req.peer] >= capacity:
                why = f"{req.peer} is at capacity ({capacity} request(s) at a time)"
                declined[rid] = HelpReply(
                    requester=name, peer=req.peer, part=req.part, reply="", declined=why
                )
                say(req.peer, name, "decline", why, correlation_id=rid)
                continue
            load[req.peer] += 1
            sends.append(
                Send(
                    "help",
                    HelpInput(id=rid, task=task, requester=name, peer=req.peer, part=req.part),
                )
            )
        ids = [f"t{turn}-{i}" for i in range(1, len(requests) + 1)]
        return Command(goto=sends, update={**base, "asked": ids, "help": declined})

    @node
    async def helper(payload: HelpInput, runtime: Runtime[PlaitContext]) -> Command[str]:
        peer, rid = payload["peer"], payload["id"]
        reply = await ask(
            runtime,
            peer,
            role_prompt(peer, prompts, PROMPTS),
            user_prompt(payload["task"], help_with_this_part=payload["part"]),
        )
        say(peer, payload["requester"], "help_reply", reply.value, correlation_id=rid)
        answered = HelpReply(
            requester=payload["requester"],
            peer=peer,
            part=payload["part"],
            reply=reply.value,
            declined="",
        )
        return Command(goto=payload["requester"], update={"help": {rid: answered}})

    builder = StateGraph(SwarmState, context_schema=PlaitContext)
    for name in agents:
        builder.add_node(name, agent(name), destinations=(*agents, "help", END))
    builder.add_node("help", helper, input_schema=HelpInput, destinations=agents)
    builder.add_edge(START, start)
    return builder


def _allowed(has_peers: bool, closed: str, asked: Sequence[str]) -> tuple[str, ...]:
    # Offering only the allowed actions in the schema makes a forbidden move a re-ask.
    barred = {"handoff"} if closed else set()
    if asked:
        barred.add("ask_help")  # one help round per turn, so help cannot loop
    return tuple(a for a in ACTIONS if a == "answer" or (has_peers and a not in barred))


def _bounces(path: Sequence[str]) -> bool:
    # A handoff never goes to the sender, so x, y, x, y at the end means two agents bouncing.
    return len(path) >= 4 and path[-1] == path[-3] and path[-2] == path[-4]


def _rules(actions: Sequence[str], closed: str, asked: Sequence[str]) -> str:
    lines = [RULES[a] for a in actions]
    if closed:
        lines.append(f"You may not hand off: {closed}.")
    if asked:
        lines.append("You have had your help replies; do not ask again.")
    return "\n".join(lines)


def _help_text(replies: Mapping[str, HelpReply], ids: Sequence[str]) -> str:
    return "\n\n".join(
        f"[{replies[i]['peer']}] on {replies[i]['part']!r}: "
        + (replies[i]["reply"] or f"declined: {replies[i]['declined']}")
        for i in ids
        if i in replies
    )
