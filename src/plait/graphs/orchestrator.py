"""Orchestrator-worker: plan -> one worker per subtask, in parallel -> synthesize.

Each worker is sent (with ``Send``) only the task and its own subtask. Outputs merge by subtask
id, so a worker that re-runs on resume replaces its output rather than adding one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from plait.errors import GraphSetupError, PlaitError
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key
from plait.state.log import envelope

DEFAULT_ROSTER = ("researcher", "analyst", "coder", "writer", "reviewer", "qa_tester")
BRANCH_ERROR_MODES = ("fail", "continue")


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
    role_type = Literal[tuple(roster)]  # type: ignore[valid-type]
    step = create_model(
        "PlannedSubtask",
        id=(str, Field(description="short unique id, e.g. s1")),
        role=(role_type, Field(description="the worker role that should do it")),
        description=(str, Field(description="what the worker must do and return")),
    )
    return create_model(
        "Plan",
        subtasks=(list[step], Field(min_length=min_subtasks, max_length=max_subtasks)),  # type: ignore[valid-type]
    )


def create_orchestrator_graph(
    *,
    roster: Sequence[str] = DEFAULT_ROSTER,
    min_subtasks: int = 3,
    max_subtasks: int = 7,
    on_branch_error: str = "fail",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph:
    """Build the orchestrator-worker graph.

    Args:
        roster: Worker roles the planner may assign.
        min_subtasks: Fewest subtasks a plan may have.
        max_subtasks: Most subtasks a plan may have.
        on_branch_error: ``fail`` stops the run when a worker fails (resume re-runs only
            that worker); ``continue`` records the failure in ``errors`` and tells the
            synthesizer.
        prompts: Role instructions to override, keyed by role.

    Example:
        ``app = create_orchestrator_graph(roster=["researcher", "coder"]).compile()``
    """
    roster = tuple(roster)
    if not roster:
        raise GraphSetupError("roster must name at least one worker role")
    if not 1 <= min_subtasks <= max_subtasks:
        raise GraphSetupError(
            f"need 1 <= min_subtasks <= max_subtasks, got {min_subtasks} and {max_subtasks}"
        )
    if on_branch_error not in BRANCH_ERROR_MODES:
        raise GraphSetupError(
            f"invalid on_branch_error {on_branch_error!r}; choose one of {BRANCH_ERROR_MODES}"
        )
    schema = plan_schema(roster, min_subtasks, max_subtasks)
    plan_rules = (
        f"Use between {min_subtasks} and {max_subtasks} subtasks. "
        f"Roster (valid roles): {', '.join(roster)}."
    )

    async def planner(state: OrchestratorState, runtime: Runtime[PlaitContext]) -> dict:
        reply = await ask_for(
            runtime,
            "planner",
            role_prompt("planner", prompts),
            user_prompt(state["task"], rules=plan_rules),
            schema,
        )
        subtasks = _unique_ids([s.model_dump() for s in reply.value.subtasks])
        return {
            "subtasks": subtasks,
            "usage": reply.usage,
            "log": [
                envelope("planner", s["role"], "assign", s["description"], correlation_id=s["id"])
                for s in subtasks
            ],
        }

    def dispatch(state: OrchestratorState) -> list[Send]:
        return [
            Send("worker", WorkerInput(task=state["task"], subtask=s)) for s in state["subtasks"]
        ]

    async def worker(payload: WorkerInput, runtime: Runtime[PlaitContext]) -> dict:
        sub = payload["subtask"]
        try:
            reply = await ask(
                runtime,
                sub["role"],
                role_prompt(sub["role"], prompts),
                user_prompt(payload["task"], your_subtask=sub["description"]),
            )
        except PlaitError as exc:
            if on_branch_error == "fail":
                raise
            return {
                "errors": {sub["id"]: str(exc)},
                "log": [
                    envelope(
                        sub["role"], "synthesizer", "failure", str(exc), correlation_id=sub["id"]
                    )
                ],
            }
        return {
            "outputs": {sub["id"]: reply.value},
            "usage": reply.usage,
            "log": [
                envelope(
                    sub["role"], "synthesizer", "result", reply.value, correlation_id=sub["id"]
                )
            ],
        }

    async def synthesizer(state: OrchestratorState, runtime: Runtime[PlaitContext]) -> dict:
        outputs, errors = state.get("outputs", {}), state.get("errors", {})
        results = "\n\n".join(
            f"[{s['id']} · {s['role']}] {s['description']}\n"
            + (outputs[s["id"]] if s["id"] in outputs else f"FAILED: {errors.get(s['id'], '?')}")
            for s in state["subtasks"]
        )
        reply = await ask(
            runtime,
            "synthesizer",
            role_prompt("synthesizer", prompts),
            user_prompt(state["task"], worker_results=results),
        )
        return {
            "result": reply.value,
            "usage": reply.usage,
            "log": [envelope("synthesizer", "user", "result", reply.value)],
        }

    builder = StateGraph(OrchestratorState, context_schema=PlaitContext)
    builder.add_node("planner", planner)
    builder.add_node("worker", worker, input_schema=WorkerInput)
    builder.add_node("synthesizer", synthesizer)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", dispatch, ["worker"])
    builder.add_edge("worker", "synthesizer")
    builder.add_edge("synthesizer", END)
    return builder


def _unique_ids(subtasks: list[dict]) -> list[Subtask]:
    # Outputs merge by id, so two subtasks sharing an id would overwrite each other.
    seen: set[str] = set()
    unique = []
    for index, sub in enumerate(subtasks, 1):
        sid = sub["id"].strip() or f"s{index}"
        if sid in seen:
            sid = f"{sid}-{index}"
        seen.add(sid)
        unique.append(Subtask(id=sid, role=sub["role"], description=sub["description"]))
    return unique
