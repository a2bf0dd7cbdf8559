"""Orchestrator-worker: plan -> one worker per subtask, in parallel -> synthesize.

Each worker is sent (with ``Send``) only the task and its own subtask. Outputs merge by subtask
id, so a worker that re-runs on resume replaces its output rather than adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from plait.errors import GraphSetupError
from plait.graphs.checks import check_subtask_range
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.branch import unique_ids
from plait.nodes.kit import node, record_failure, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

DEFAULT_ROSTER = ("researcher", "analyst", "coder", "writer", "reviewer", "qa_tester")
# Options of the planning patterns (orchestrator, dag), declared once so they cannot drift.
Roster = Annotated[Sequence[str], Field(description="worker roles the planner may assign")]
MinSubtasks = Annotated[int, Field(ge=1, description="fewest subtasks the plan may have")]
MaxSubtasks = Annotated[int, Field(ge=1, description="most subtasks the plan may have")]


class Subtask(TypedDict):
    id: str
    role: str
    description: str


class OrchestratorState(CommonState, total=False):
    subtasks: list[Subtask]
    outputs: Annotated[dict[str, str], merge_by_key]


class WorkerInput(TypedDict):
    """What ``Send`` carries to one worker: its own input, not a copy of the state."""

    task: str
    subtask: Subtask


def plan_schema(roster: Sequence[str], min_subtasks: int, max_subtasks: int) -> type[BaseModel]:
    """A pydantic plan whose roles must come from ``roster``, so a bad role is re-asked."""
    role_type: Any = Literal[tuple(roster)]  # a Literal built at run time
    step = create_model(
        "PlannedSubtask",
        id=(str, Field(description="short unique id, e.g. s1")),
        role=(role_type, Field(description="the worker role that should do it")),
        description=(str, Field(description="what the worker must do and return")),
    )
    return create_model(
        "Plan",
        subtasks=(list[step], Field(min_length=min_subtasks, max_length=max_subtasks)),
    )


S = TypeVar("S", bound=Subtask)


def subtask_results(subtasks: Iterable[S], report: Callable[[S], str]) -> str:
    """Subtasks as the agent that reads their outputs is sent them.

    Each is a line with its id, role and description, then ``report(subtask)``: its output, or
    why there is none. Blank lines separate them.
    """
    return "\n\n".join(
        f"[{s['id']} · {s['role']}] {s['description']}\n{report(s)}" for s in subtasks
    )


@validated
def create_orchestrator_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    roster: Roster = DEFAULT_ROSTER,
    min_subtasks: MinSubtasks = 3,
    max_subtasks: MaxSubtasks = 7,
    on_branch_error: Annotated[
        Literal["fail", "continue"],
        Field(
            description="a failed branch stops the run (fail) or is recorded and shown to the "
            "synthesizer (continue)"
        ),
    ] = "fail",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[OrchestratorState, PlaitContext]:
    """A planner splits the task, workers run the subtasks in parallel, a synthesizer
    joins them.

    Args:
        prompts: Role instructions to override, keyed by role.

    Example:
        ``app = create_orchestrator_graph(roster=["researcher", "coder"]).compile()``
    """
    roster = tuple(roster)
    if not roster:
        raise GraphSetupError("roster must name at least one worker role")
    check_subtask_range(min_subtasks, max_subtasks)
    schema = plan_schema(roster, min_subtasks, max_subtasks)
    plan_rules = (
        f"Use between {min_subtasks} and {max_subtasks} subtasks. "
        f"Roster (valid roles): {', '.join(roster)}."
    )

    @node
    async def planner(state: OrchestratorState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        reply = await ask_for(
            runtime,
            "planner",
            role_prompt("planner", prompts),
            user_prompt(state["task"], rules=plan_rules),
            schema,
        )
        plan: Any = reply.value  # a create_model class: mypy cannot see its fields
        subtasks = _unique_ids([s.model_dump() for s in plan.subtasks])
        for s in subtasks:
            say("planner", s["role"], "assign", s["description"], correlation_id=s["id"])
        return {"subtasks": subtasks}

    async def dispatch(state: OrchestratorState) -> list[Send]:
        return [
            Send("worker", WorkerInput(task=state["task"], subtask=s)) for s in state["subtasks"]
        ]

    @node(
        branch=_subtask_id,
        on_error=(
            record_failure("synthesizer", sender=lambda p: p["subtask"]["role"])
            if on_branch_error == "continue"
            else None
        ),
    )
    async def worker(payload: WorkerInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        sub = payload["subtask"]
        reply = await ask(
            runtime,
            sub["role"],
            role_prompt(sub["role"], prompts),
            user_prompt(payload["task"], your_subtask=sub["description"]),
        )
        say(sub["role"], "synthesizer", "result", reply.value, correlation_id=sub["id"])
        return {"outputs": {sub["id"]: reply.value}}

    @node
    async def synthesizer(
        state: OrchestratorState, runtime: Runtime[PlaitContext]
    ) -> dict[str, Any]:
        outputs, errors = state.get("outputs", {}), state.get("errors", {})

        def report(sub: Subtask) -> str:
            if sub["id"] in outputs:
                return outputs[sub["id"]]
            return f"FAILED: {errors.get(sub['id'], '?')}"

        results = subtask_results(state["subtasks"], report)
        reply = await ask(
            runtime,
            "synthesizer",
            role_prompt("synthesizer", prompts),
            user_prompt(state["task"], worker_results=results),
        )
        say("synthesizer", "user", "result", reply.value)
        return {"result": reply.value}

    builder = StateGraph(OrchestratorState, context_schema=PlaitContext)
    builder.add_node("planner", planner)
    builder.add_node("worker", worker, input_schema=WorkerInput)
    builder.add_node("synthesizer", synthesizer)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", dispatch, ["worker"])
    builder.add_edge("worker", "synthesizer")
    builder.add_edge("synthesizer", END)
    return builder


def _subtask_id(payload: WorkerInput) -> str:
    return payload["subtask"]["id"]


def _unique_ids(subtasks: list[dict[str, Any]]) -> list[Subtask]:
    # Outputs merge by id, so two subtasks sharing an id would overwrite each other.
    ids = unique_ids(sub["id"] for sub in subtasks)
    return [
        Subtask(id=sid, role=sub["role"], description=sub["description"])
        for sid, sub in zip(ids, subtasks, strict=True)
    ]
